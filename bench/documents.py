"""The documents suite: language detection (memory, p50 for a 200-character text) and splitting a document.

Detection runs in a fresh interpreter (`python -m bench.documents`), so that its memory is its own: lingua's
high-accuracy models for the 32 languages of ours it knows, preloaded as `serve` does at start-up."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import psutil

from .cpu import Plan

SAMPLE = ("Le vent du nord et le soleil se disputaient pour savoir lequel des deux était le plus fort, quand un "
          "voyageur s'avança, enveloppé dans un bon manteau. Ils convinrent que celui qui arriverait le premier "
          "à le lui faire ôter.")[:200]


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": round(statistics.median(ordered) * 1000, 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


def probe(repeats: int) -> dict[str, Any]:
    """In this (fresh) process: build the detector, then time detections of a 200-character text."""
    from hmt_stream.documents import split
    from hmt_stream.documents.detect import detect, detector
    from tests.documents.samples import html_page, markdown_document

    process = psutil.Process()
    before = process.memory_info().rss
    began = time.perf_counter()
    detector()
    build_s = time.perf_counter() - began
    after_build = process.memory_info().rss
    assert len(SAMPLE) == 200 and detect(SAMPLE)[0].language == "fr"
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        detect(SAMPLE)
        times.append(time.perf_counter() - began)
    splits: dict[str, Any] = {}
    for name, text, format in (("markdown_100k", markdown_document(100_000), "markdown"),
                               ("html_100k", html_page(120), "html")):
        samples = []
        for _ in range(max(3, repeats // 100)):
            began = time.perf_counter()
            parts = split(text, format)
            samples.append(time.perf_counter() - began)
        splits[name] = {"chars": len(text), "segments": sum(not isinstance(p, str) for p in parts), **_ms(samples)}
    return {
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "cores": os.cpu_count(),
        "detector_build_s": round(build_s, 2),
        "detector_rss_mb": round((after_build - before) / 2**20, 1),
        "detect_200_chars_ms": _ms(times),
        "split": splits,
    }


async def documents(plan: Plan) -> dict[str, Any]:
    repeats = 200 if plan.quick else 2000
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.documents", str(repeats),
                                                   stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the detection probe exited with {process.returncode}")
    return dict(json.loads(out))


def section(data: dict[str, Any] | None) -> str:
    """docs/benchmarks.md's section for this suite."""
    if not data:
        return ""
    head = "## 5. Documents: language detection and splitting\n\n"
    if "error" in data:
        return head + f"Failed: `{data['error']}`\n"
    detect = data["detect_200_chars_ms"]
    rows = [f"| lingua detector, high accuracy, 32 languages preloaded: build | {data['detector_build_s']} s |",
            f"| … its memory (RSS it adds to the process) | {data['detector_rss_mb']} MB |",
            f"| detect a 200-character text, p50 / p99 ({detect['n']} runs) | {detect['p50']} / {detect['p99']} ms |"]
    for name, row in data["split"].items():
        rows.append(f"| split {name.replace('_', ' ')} ({row['chars']:,} characters, {row['segments']} segments), "
                    f"p50 | {row['p50']} ms |")
    load = data.get("load_average")
    return (head + "`serve` builds the detector at start-up (in a thread) when `model.warmup` is on; the memory is "
            "host RAM, not GPU memory. Splitting counts tokens with a tokenizer-free estimate here; the server "
            "counts them with the model's tokenizer, which adds its own time per sentence, and plans documents "
            "over 4,000 characters in a worker thread. "
            f"Measured with a load average of {load} on {data.get('cores')} cores (a shared machine: the times "
            "are pessimistic).\n\n"
            "| figure | measured |\n| --- | --- |\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
