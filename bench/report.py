"""docs/benchmarks.json (raw figures) and docs/benchmarks.md (method, machine, tables with targets), written
from the JSON so that CPU runs and GPU runs can fill it in at different times."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import documents, replicas

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
JSON_NAME = "benchmarks.json"


# -- the machine ----------------------------------------------------------------------------------------------------

def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> dict[str, Any]:
    import aiohttp
    import psutil

    versions: dict[str, str] = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    for name in ("torch", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "commit": _git(),
        "load_before": load_average(),
    }


# -- files -----------------------------------------------------------------------------------------------------------

def write(results: dict[str, Any], folder: Path) -> Path:
    """Merge results into folder/benchmarks.json (keeping the GPU section and suites not run now), render the .md."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / JSON_NAME
    merged: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(results)
    path.write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    path.with_suffix(".md").write_text(render(merged))
    return path


def file_gpu_results(gpu: dict[str, Any], folder: Path = DOCS) -> Path:
    """What `python -m bench.gpu --write` calls: the GPU figures into the JSON file, and the document again."""
    return write({"gpu": gpu}, folder)


def file_results(results: dict[str, Any], folder: Path = DOCS) -> Path:
    """One suite's figures (its own key) into the JSON file, the others left as they are; the document again."""
    return write(results, folder)


# -- formatting -----------------------------------------------------------------------------------------------------

def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _le(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


TRANSPORT_NAMES = {"direct": "direct (no transport)", "websocket": "WebSocket", "sse": "SSE", "poll": "long-poll",
                   "rest": "POST /api/translate", "websocket+gc": "WebSocket, GC tuned (serve's default)",
                   "direct+gc": "direct, GC tuned (serve's default)"}


def _gc(row: dict[str, Any]) -> str:
    gc = row.get("gc") or {}
    return f"{_n(gc.get('full'))} / {_n(gc.get('longest_ms'))}" if gc else "–"


# -- the document ---------------------------------------------------------------------------------------------------

def render(data: dict[str, Any]) -> str:
    parts = [_header(data), _summary(data), _machine(data), _method(), _cost(data), _concurrency(data),
             _cache(data), _ttft(data), documents.section(data.get("documents")), _remote(data.get("remote")),
             _batching(data.get("batching")), replicas.section(data.get("replicas")),
             _reading(), _gpu(data.get("gpu"))]
    return "\n".join(part for part in parts if part)


def _header(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    quick = ("\n> **This is a `--quick` run**: every figure is from a shortened benchmark, for trying things out; "
             "run `make bench` for the real ones.\n" if data.get("quick") else "")
    return (
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m bench`, the code in `bench/`) from `docs/benchmarks.json`, which holds "
        "every raw figure; GPU figures come from `python -m bench.gpu --write`. Don't edit by hand. Targets are "
        "reported against, never asserted; `make bench` is not part of `make test`.\n\n"
        f"Last CPU run: {data.get('when', '?')}, {data.get('duration_s', '?')} s, commit `{m.get('commit', '?')}`, "
        f"on {m.get('cores', '?')} cores ({m.get('cpu', '?')}).\n{quick}"
    )


def _summary(data: dict[str, Any]) -> str:
    t = data.get("targets", {})
    rows: list[list[Any]] = []
    cost = data.get("cost", {})
    modes = cost.get("modes", {})
    n = cost.get("streams", "?")
    for mode in ("websocket", "sse", "poll", "websocket+gc"):
        if mode.endswith("+gc") and mode not in modes:
            continue
        added = _get(modes, mode, "cpu_us_per_token_added")
        rows.append([f"Server CPU per token added over direct, {TRANSPORT_NAMES[mode]} ({n} streams × 20 tok/s)",
                     f"{_n(added)} µs", f"≤ {_n(t.get('cpu_us_per_token_added'), 0)} µs",
                     _verdict(_le(added, t.get("cpu_us_per_token_added", 0)))])
    for mode in ("direct", "websocket", "sse", "poll", "websocket+gc"):
        if mode.endswith("+gc") and mode not in modes:
            continue
        p99 = _get(modes, mode, "latency_ms", "p99")
        p50 = _get(modes, mode, "latency_ms", "p50")
        rows.append([f"Token produced → received p50 / p99, {TRANSPORT_NAMES[mode]} ({n} streams)",
                     f"{_n(p50, 2)} / {_n(p99, 2)} ms", f"p99 ≤ {_n(t.get('latency_p99_ms'))} ms",
                     _verdict(_le(p99, t.get("latency_p99_ms", 0)))])
    conc = data.get("concurrency", {})
    for mode in ("websocket", "sse", "poll", "websocket+gc"):
        if mode == "websocket+gc" and mode not in conc:
            continue
        entry = conc.get(mode, {})
        held = entry.get("holds")
        note = ""
        if entry.get("first_failing") is None and entry:
            note = " (every step held: at least)"
        elif entry.get("client_bound"):
            note = " (load generator saturated: a lower bound)"
        rows.append([f"Streams at 20 tok/s held with p99 gap ≤ 100 ms, {TRANSPORT_NAMES[mode]}",
                     f"{_n(held)}{note}", f"≥ {_n(t.get('streams_held'))}",
                     _verdict(None if held is None else held >= t.get("streams_held", 0))])
    for mode in ("websocket", "sse", "poll"):
        estimate = _get(conc, mode, "streams_per_core")
        rows.append([f"… estimated from server CPU per token at {_n(_get(conc, mode, 'streams_per_core_at'))} "
                     f"streams (one core, no neighbours), {TRANSPORT_NAMES[mode]}", _n(estimate),
                     f"≥ {_n(t.get('streams_held'))}",
                     _verdict(None if estimate is None else estimate >= t.get("streams_held", 0))])
    idle = _get(data, "idle_ws", "bytes_per_connection")
    rows.append(["Server RSS per idle WebSocket", f"{_n(idle / 1024 if idle is not None else None)} KiB",
                 f"≤ {_n(t.get('idle_ws_bytes', 0) / 1024, 0)} KiB",
                 _verdict(_le(idle, t.get("idle_ws_bytes", 0)))])
    for mode in ("websocket", "sse", "poll"):
        hit = _get(data, "cache", mode)
        rows.append([f"Cache hit, request → done, p50 / p99, {TRANSPORT_NAMES[mode]}",
                     f"{_n(_get(hit, 'p50'), 2)} / {_n(_get(hit, 'p99'), 2)} ms",
                     f"p99 ≤ {_n(t.get('cache_hit_p99_ms'))} ms",
                     _verdict(_le(_get(hit, "p99"), t.get("cache_hit_p99_ms", 0)))])
    ttft = data.get("ttft", {})
    for mode in ("websocket", "sse", "poll"):
        client = _get(ttft, mode, "request_to_first_delta_ms", "p50")
        engine = _get(ttft, mode, "engine_first_delta_ms", "p50")
        rows.append([f"Demo model: request → first delta p50 (engine's own first delta), {TRANSPORT_NAMES[mode]}",
                     f"{_n(client, 2)} ms ({_n(engine, 2)} ms)", "no target", "–"])
    rows += _remote_rows(data.get("remote"))
    return "## Summary\n\n" + _table(["figure", "measured", "target", ""], rows)


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine")
    if not m:
        return ""
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    return (
        "## Machine\n\n"
        f"- CPU: {m.get('cpu')}, {m.get('cores')} cores (shared: other people's builds and tests ran on it too; "
        "each figure below says how busy the rest of the machine was while it was measured)\n"
        f"- Memory: {m.get('memory_gib')} GiB; {m.get('os')}; {versions}\n"
        f"- Load average before / after the run: {m.get('load_before')} / {data.get('load_after')}; "
        f"time spent waiting for a quiet machine: {data.get('quiet_wait_s', 0)} s\n"
    )


def _method() -> str:
    return """## Method

- **The server under test** is hmt-stream's real application (`create_app`), run in its own process the way
  `serve` runs it (INFO logging with aiohttp's access log, `handler_cancellation`), on 127.0.0.1, by
  `bench/server.py`. Its tokens come from the **ScriptedEngine** (`hmt_stream/engine/scripted.py`, not a model):
  each stream emits a token every 50 ms (20 tokens/s, the pace the concurrency target names), stamped with
  `time.monotonic_ns()` when it is produced. Time to first output uses the demo model instead.
- **The load generator** is this process (`bench/clients.py`, aiohttp, one event loop): one WebSocket per stream
  (as one page keeps one), SSE as `POST /api/sessions` + `GET …/events` with `Accept: text/event-stream`,
  long-poll as `POST` + `GET …/events?after=N` until `done`. It notes when each token arrives with the same
  clock (CLOCK_MONOTONIC is system-wide on Linux), so *latency* is arrival − production stamp and the *gap* is the
  time between two arrivals on one stream.
- **Direct** is the baseline: the same sessions started through the Translator inside the server process and
  read there with `session.events()`, no transport (`POST /bench/direct`). *CPU per token added* is a transport's
  server CPU per token minus direct's, so what the engine, the Translator and the session log cost (the same in
  both) cancels out.
- **CPU** is the server process's user + system time (psutil, every thread) over a **steady-state window** that
  opens once every stream has started (streams start spread over a second or two, as real users do, not in
  lock-step) and closes before any ends, divided by the tokens that arrived in it. Connection set-up and session
  creation fall outside the window. The load generator's own CPU and the rest of the machine's are measured over
  the same window: with 2 cores, a saturated client or a busy neighbour shows there.
- **Concurrency** steps up the number of streams on a fresh server per transport until the p99 gap exceeds 100 ms
  (nominal gap: 50 ms), a stream fails, or fewer than 90 % of the due tokens arrive. Since neighbours on a
  shared machine disturb gaps far more than CPU time, each transport also gets an *estimate*: the streams one core
  could serve at the server CPU per token measured at the largest step (the server is one event loop, so one
  core is its ceiling; the load generator needs the other). **Idle WebSockets**: server
  RSS before and after opening N sockets that receive `hello` and then nothing, divided by N.
- **Cache hits**: one text, translated once, then asked for again and again, one request at a time; from sending
  the request to receiving `done`.
- **Time to first output**: the demo model (the real TransformersEngine on CPU, default sampling, cache off), one
  request at a time; split at the moments the engine was asked to generate and gave its first delta (the server process
  notes both per request), so *request → engine* is intake (HTTP, validation, tokenising, scheduling) and
  *engine → client* is delivery.
- Before each measurement the harness waits (within a budget) for the machine to be under 25 % busy, and takes a
  measurement again, once, when other processes used more than 40 % of the machine during it (the quieter of the
  two is kept). The server runs in a session of its own, so that where the kernel shares CPU between sessions
  (autogroup) it does not split one share with its load generator.
"""


def _pcts(row: dict[str, Any]) -> list[str]:
    return [_n(row.get("server_cpu_pct")), _n(row.get("client_cpu_pct")), _n(row.get("others_cpu_pct"))]


def _cost(data: dict[str, Any]) -> str:
    cost = data.get("cost")
    if not cost:
        return ""
    if "error" in cost:
        return f"## 1. Server cost per token\n\nFailed: `{cost['error']}`\n"
    rows = []
    for mode, row in cost["modes"].items():
        lat, gap = row.get("latency_ms", {}), row.get("gap_ms", {})
        share = row.get("server_system_share")
        rows.append([TRANSPORT_NAMES[mode], _n(row.get("server_cpu_us_per_token")),
                     "–" if share is None else f"{share:.0%}",
                     _n(row.get("cpu_us_per_token_added")) if not mode.startswith("direct") else "–",
                     _n(row.get("streams_per_core")),
                     f"{_n(lat.get('p50'), 2)} / {_n(lat.get('p90'), 2)} / {_n(lat.get('p99'), 2)} / "
                     f"{_n(lat.get('max'), 2)}", _n(gap.get("p99")),
                     f"{_n(row.get('tokens'))} ({_n(row.get('tokens_per_s'), 0)}/s)", *_pcts(row),
                     _gc(row), row.get("errors", 0)])
    return (f"## 1. Server cost per token\n\n{cost['streams']} streams × {_n(cost['rate'], 0)} tokens/s, "
            f"{cost['window_s']} s window, one mode after the other on one server (the GC-tuned run on a "
            "second one, against its own direct baseline).\n\n"
            + _table(["mode", "server CPU µs/token", "of it in the kernel", "added over direct",
                      "streams per core (estimate)",
                      "latency p50 / p90 / p99 / max (ms)",
                      "gap p99 (ms)", "tokens in window", "server CPU %", "client CPU %", "others' CPU %",
                      "full GCs / longest GC pause (ms)", "errors"], rows))


def _concurrency(data: dict[str, Any]) -> str:
    conc = data.get("concurrency")
    out = "## 2. Concurrency\n\n"
    if not conc and not data.get("idle_ws"):
        return ""
    if conc and "error" in conc:
        out += f"Failed: `{conc['error']}`\n\n"
    elif conc:
        for mode, entry in conc.items():
            verdict = (f"holds **{_n(entry['holds'])}** streams (estimate from CPU per token at "
                       f"{_n(entry.get('streams_per_core_at'))} streams: {_n(entry.get('streams_per_core'))} on "
                       "one core of its own)"
                       + (f"; {_n(entry['first_failing'])} failed" if entry.get("first_failing") else
                          "; every step held (the figure is a lower bound)")
                       + ("; the load generator was saturated at the failing step, so this is a lower bound"
                          if entry.get("client_bound") else ""))
            rows = []
            for step in entry["steps"]:
                gap, lat = step.get("gap_ms", {}), step.get("latency_ms", {})
                rows.append([_n(step["streams"]), f"{_n(step['tokens_per_s'], 0)} / "
                             f"{_n(step['expected_tokens_per_s'], 0)}",
                             f"{_n(gap.get('p50'))} / {_n(gap.get('p99'))} / {_n(gap.get('max'))}",
                             _n(lat.get("p99")), *_pcts(step), _gc(step), step.get("errors", 0),
                             "yes" if step.get("held") else "**no**"])
            out += (f"**{TRANSPORT_NAMES[mode]}**: {verdict}.\n\n"
                    + _table(["streams", "tokens/s arrived / due", "gap p50 / p99 / max (ms)", "latency p99 (ms)",
                              "server CPU %", "client CPU %", "others' CPU %", "full GCs / longest GC pause (ms)",
                              "errors", "held"], rows) + "\n")
    idle = data.get("idle_ws")
    if idle and "error" not in idle:
        out += (f"**Idle WebSockets**: {_n(idle['connections'])} sockets took the server from "
                f"{_n(idle['rss_before'] / 2**20)} MiB to {_n(idle['rss_after'] / 2**20)} MiB RSS: "
                f"**{_n(idle['bytes_per_connection'] / 1024)} KiB per connection**.\n")
    elif idle:
        out += f"Idle WebSockets failed: `{idle['error']}`\n"
    return out


def _cache(data: dict[str, Any]) -> str:
    cache = data.get("cache")
    if not cache:
        return ""
    if "error" in cache:
        return f"## 3. Cache hits\n\nFailed: `{cache['error']}`\n"
    rows = [[TRANSPORT_NAMES[mode], _n(row.get("n")), _n(row.get("p50"), 2), _n(row.get("p90"), 2),
             _n(row.get("p99"), 2), _n(row.get("max"), 2), row.get("misses", 0)] for mode, row in cache.items()]
    return ("## 3. Cache hits\n\nRequest → `done`, one request at a time (WebSocket already open; SSE and "
            "long-poll are a POST and then a GET on a kept-alive connection).\n\n"
            + _table(["mode", "requests", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)", "not cached"], rows))


def _ttft(data: dict[str, Any]) -> str:
    ttft = data.get("ttft")
    if not ttft:
        return ""
    if "error" in ttft:
        return f"## 4. Time to first output (demo model)\n\nFailed: `{ttft['error']}`\n"
    rows = []
    for mode, row in ttft.items():
        client, engine = row["request_to_first_delta_ms"], row["engine_first_delta_ms"]
        rows.append([TRANSPORT_NAMES[mode], _n(client.get("n")),
                     f"{_n(client.get('p50'), 2)} / {_n(client.get('p99'), 2)}",
                     f"{_n(engine.get('p50'), 2)} / {_n(engine.get('p99'), 2)}",
                     _n(row["request_to_engine_ms"].get("p50"), 2), _n(row["engine_to_client_ms"].get("p50"), 2),
                     _n(_get(row, "tokens_before_first_delta", "p50"), 0)])
    return ("## 4. Time to first output (demo model)\n\nThe engine's first delta comes after its first *token* "
            "by at least one decode step: the incremental decoder holds the last character back until the next "
            "token shows it is complete, and a random model's first tokens are often special ones that decode to "
            "nothing (the last column counts the tokens made by then). With the tiny demo model a decode step "
            "takes a millisecond or two on this CPU; with Hunyuan-MT-7B it is the GPU's step time. Components "
            "are medians of their own, so they need not add up.\n\n"
            + _table(["mode", "requests", "request → first delta p50 / p99 (ms)",
                      "engine: generate() → first delta p50 / p99 (ms)", "request → engine p50 (ms)",
                      "engine → client p50 (ms)", "tokens made by the first delta, p50"], rows))


def _batching(batching: dict[str, Any] | None) -> str:
    head = "## 7. Batching: the local engine, concurrent sessions\n\n"
    if not batching:
        return ""
    if "error" in batching:
        return head + f"Failed: `{batching['error']}`\n"
    t, v, engine = batching.get("targets", {}), batching.get("verdict", {}), batching.get("batched_engine", {})
    out = head
    if batching.get("quick"):
        out += "> **A `--quick` run** (a tiny model): a smoke test of the suite, not a benchmark.\n\n"
    out += (
        f"`python -m bench.batching` ({batching.get('when')}, {batching.get('duration_s')} s): a HunYuanDenseV1 "
        f"with random weights, {batching.get('parameters', 0) / 1e6:,.0f} M parameters in float32 (hidden 1024, "
        "16 layers, FFN 2816, 4 KV heads, 32,000 words), torch on "
        f"{batching.get('torch_threads')} threads (OpenMP wait policy {batching.get('omp_wait_policy')}). N "
        f"sessions start at once, each with its own prompt of {batching.get('prompt_tokens')} tokens, sampling "
        f"with the model card's settings, {batching.get('new_tokens')} new tokens each. **threads**: "
        "TransformersEngine, a `generate()` per session in a thread of its own (`model.batching = false`); "
        f"**batched**: BatchedEngine (batch {engine.get('max_batch')}, prefill chunk {engine.get('prefill_chunk')}, "
        f"{engine.get('attention')} attention, {engine.get('linears')} linears, cpu_linear.py). "
        "*tokens/s*: every token ÷ the time from the start to the last session's end (prefill included); "
        "*ms/token*: the median gap between two deltas of one session (a delta is one token with this "
        "word-level tokenizer); *CPU ms/token*: this process's CPU time ÷ tokens; *others*: the rest of the "
        "machine's CPU use meanwhile (on its cores).\n\n")
    rows = []
    runs = batching.get("runs", {})
    for count in runs.get("batched", {}):
        a, b = runs.get("threads", {}).get(count, {}), runs["batched"][count]
        ratio = b["tokens_per_s"] / a["tokens_per_s"] if a.get("tokens_per_s") else None
        rows.append([count, _n(a.get("tokens_per_s")), _n(b.get("tokens_per_s")),
                     "–" if ratio is None else f"{ratio:.2f}×",
                     f"{_n(a.get('ms_per_token_p50'))} / {_n(b.get('ms_per_token_p50'))}",
                     f"{_n(a.get('ttft_ms_p50'), 0)} / {_n(b.get('ttft_ms_p50'), 0)}",
                     f"{_n(a.get('cpu_ms_per_token'))} / {_n(b.get('cpu_ms_per_token'))}",
                     f"{_n(a.get('others_cpu_pct'), 0)} / {_n(b.get('others_cpu_pct'), 0)} %"])
    out += _table(["sessions", "threads tok/s", "batched tok/s", "batched ÷ threads",
                   "ms/token p50, threads / batched", "first token p50 (ms), threads / batched",
                   "CPU ms/token, threads / batched", "others' CPU, threads / batched"], rows)
    speedup, ratio = v.get("speedup_at_8"), v.get("ms_per_token_8_over_1")
    if speedup is not None:
        goal = t.get("speedup_at_8", 0)
        out += (f"\n- Aggregate tokens/s at 8 sessions, batched ÷ threads: **{speedup:.2f}×** (target ≥ {goal:g}×: "
                f"{_verdict(speedup >= goal)})\n")
    if ratio is not None:
        limit = t.get("ms_per_token_8_over_1", 0)
        out += (f"- Batched time per token at 8 sessions ÷ at 1: **{ratio:.2f}×** (target ≤ {limit:g}×: "
                f"{_verdict(ratio <= limit)})\n")
    linear = batching.get("linear_2816x1024")
    if linear:
        out += (f"- One 2816×1024 layer, best of 30: 1 row {_n(linear['1']['x_wt_us'], 0)} µs; 8 rows "
                f"{_n(linear['8']['x_wt_us'], 0)} µs as torch computes it (x·Wᵀ), {_n(linear['8']['w_xt_us'], 0)} "
                f"µs weight-first ((W·xᵀ)ᵀ), {_n(linear['8'].get('packed_us'), 0)} µs with oneDNN's packed copy "
                "(cpu_linear.py).\n")
    out += (f"- Load average before / after: {batching.get('load_before')} / {batching.get('load_after')} (2 "
            "cores: above 2, other work was waiting for a core); each figure was taken after waiting (at most "
            "10 s, 90 s in all) for the machine to be under 25 % busy, and again when others used more than "
            f"40 % of it meanwhile, keeping the quieter: {_n(batching.get('quiet_wait_s'))} s waited, "
            f"{_n(batching.get('retries'))} taken again.\n\n"
            "Reading them: one session's step reads every weight (0.85 GB) and is bound by memory bandwidth; a "
            "thread per session repeats that read for each, so threads add little. A batched step reads the "
            "weights once for all rows, but a CPU has little arithmetic per byte of bandwidth: from a few rows on "
            "the step is bound by arithmetic (8 rows through one layer: about 1.5 times one row's time with the "
            "packed copy, above), so on a CPU the time per token grows with the batch while tokens/s still climb. "
            "A GPU has dozens of times more arithmetic per byte and stays bandwidth-bound past 64 rows. *CPU "
            "ms/token* is the least disturbed by a busy machine: it shows what a token costs each engine. The "
            "margin to the time-per-token target is thin on this CPU: in another quiet run the same hour, 8 "
            "sessions took 166 ms per token instead of 138 (1.72× one session's 96 ms).\n")
    return out


def _reading() -> str:
    return """## Reading the figures

- **Long-poll** asks once per event: at 20 tokens/s that is one HTTP request per token (parsing, routing,
  middlewares, the access-log line, a JSON answer), so its cost per token is the cost of a request. It is the
  fallback for networks that break streaming; under load it batches by itself (a late poll brings several events).
- **Two shared cores.** The load generator runs beside the server and needs CPU per token too; when its CPU
  column nears 100 % it, not the server, is the limit, and the concurrency figure is a lower bound. Other
  people's work on the machine shows in the "others' CPU %" columns: figures measured while it was high are
  pessimistic, latencies (p99 above all) most of all.
- **Garbage collection.** CPython's full collections walk every live object, and a server holding hundreds of
  sessions (each event is a few objects, kept for `session.retention_s`) has many: one pause of the event loop
  then delays every stream at once. The "full GCs / longest GC pause" columns show it (timed in the server with
  `gc.callbacks`); *WebSocket, GC tuned* is the same server with `gc.freeze()` after start-up and
  `gc.set_threshold(50_000, 20, 100)`: what `serve` does since `server.gc_tuning` (on by default); the other rows
  run with Python's default collector (`gc_tuning = false`).
- **Loopback.** Over 127.0.0.1 the kernel runs the receiving end of TCP inside the sender's `send()`, so the
  server's system time (the "in the kernel" column) includes work a real network card and the client's machine
  would do. Each token is one `send()` on every transport: tokens of one stream are 50 ms apart, so there is
  nothing to coalesce.
- **Token size.** A scripted token is `[t=<monotonic ns>]x`, about 20 bytes, several times a real token's text;
  the `done` event repeats the whole text. Real traffic writes fewer bytes per token.
- **The engine.** The ScriptedEngine runs on the event loop (a timer per token); the real engine hands each token
  over from a worker thread (`call_soon_threadsafe`) and holds the GIL while it decodes, which costs the loop more.
  The direct baseline carries the engine's share, so *added over direct* is the transport's own cost.
"""


def _gpu(gpu: dict[str, Any] | None) -> str:
    head = "## GPU (full-size HunYuanDenseV1, random weights)\n\n"
    if not gpu:
        return (head + "> **Not run yet.** The machine these figures come from has no GPU. On any CUDA machine "
                "run `python -m bench.gpu --write` (about 10 minutes; needs ≈ 20 GB of GPU memory): it fills in "
                "this section and the `gpu` key of `docs/benchmarks.json`.\n>\n"
                "> Targets: batch-1 decode ≥ 75 % of the bandwidth bound (weight bytes ÷ measured copy "
                "bandwidth), time to first token p50 ≤ 25 ms for a 100-token prompt, ≥ 3,000 tokens/s aggregate "
                "at 64 streams. The script measures bf16 and 8-bit, the dynamic cache (today's engine), a static "
                "cache and a compiled static cache, and 8/32/64 streams through the Translator with "
                "TransformersEngine (a thread per stream, `model.batching = false`) and with BatchedEngine (one "
                "decode loop for all of them, the default).\n")
    t = gpu.get("targets", {})
    m = gpu.get("machine", {})
    out = head
    if gpu.get("tiny"):
        out += ("> **These are `--tiny` figures (a tiny config on CPU)**: a smoke test of the script, not a "
                "benchmark.\n\n")
    settings = gpu.get("settings", {})
    out += (f"Run {gpu.get('when')} on {m.get('gpu', m.get('cpu', '?'))} (torch {m.get('torch')}, transformers "
            f"{m.get('transformers')}, CUDA {m.get('cuda', '–')}); measured copy bandwidth "
            f"{_n(gpu.get('copy_bandwidth_GBps'))} GB/s; prompt {settings.get('prompt_tokens')} tokens, "
            f"{settings.get('new_tokens')} new tokens per generation.\n\n")
    rows = []
    for mode, figures in gpu.get("modes", {}).items():
        if "error" in figures:
            rows.append([mode, f"failed: `{figures['error']}`", "", "", "", "", ""])
            continue
        bound = figures["bound_tokens_per_s"]
        for variant, row in figures["decode"].items():
            if "tokens_per_s" not in row:
                rows.append([mode, variant, row.get("error") or row.get("skipped"), "", "", "", ""])
                continue
            fraction = row["tokens_per_s"] / bound
            rows.append([mode, variant, f"{_n(row['tokens_per_s'])} tok/s ({_n(row['ms_per_token'], 2)} ms)",
                         f"{_n(bound)} tok/s ({_n(figures['weight_bytes'] / 1e9, 2)} GB)",
                         f"{fraction:.0%} ({_verdict(fraction >= t.get('decode_fraction_of_bound', 0))})",
                         _n(row["ttft_ms_p50"], 2),
                         _verdict(_le(row["ttft_ms_p50"], t.get("ttft_p50_ms", 0)))])
    out += ("### Batch-1 decode and time to first token\n\n"
            + _table(["mode", "cache", "decode", "bandwidth bound", "of bound (target ≥ 75 %)",
                      "TTFT p50 (ms)", "TTFT ≤ 25 ms"], rows) + "\n")
    rows = []
    for mode, figures in gpu.get("modes", {}).items():
        if "error" in figures:
            continue
        for engine, runs in figures["streams"].items():
            for count, run in runs.items():
                if "error" in run:
                    rows.append([mode, engine, count, f"failed: `{run['error']}`", "", "", ""])
                    continue
                target = t.get("tokens_per_s_at_64", 0)
                rows.append([mode, engine, count, _n(run["tokens_per_s"]), _n(run["tokens_per_stream"]),
                             f"{_n(run['ttft_ms_p50'])} / {_n(run['ttft_ms_p99'])}",
                             _verdict(run["tokens_per_s"] >= target) if count == "64" else "–"])
        first = figures.get("engine_first_delta_ms_p50")
        out += f"First delta through TransformersEngine ({mode}), p50: {_n(first, 2)} ms.\n\n"
    out += ("### Concurrent streams through the Translator\n\n`threads`: TransformersEngine, one generate() per "
            "worker thread (`model.batching = false`); `batched`: BatchedEngine, every stream in one decode loop "
            "(the default; see section 7).\n\n"
            + _table(["mode", "engine", "streams", "aggregate tok/s", "tokens per stream", "TTFT p50 / p99 (ms)",
                      "≥ 3,000 tok/s at 64"], rows))
    return out


# -- the remote engine (bench/remote.py) -------------------------------------------------------------------------------

def _remote_rows(remote: dict[str, Any] | None) -> list[list[Any]]:
    if not remote or "error" in remote:
        return []
    t = remote.get("targets", {})
    added, ttft = remote.get("cpu_us_per_token_added"), remote.get("ttft_added_p50_ms")
    return [[f"Remote engine: gateway CPU per token added over reading the server's stream directly "
             f"({remote['streams']} streams × {_n(remote['rate'], 0)} tok/s)", f"{_n(added)} µs",
             f"≤ {_n(t.get('cpu_us_per_token_added'), 0)} µs",
             _verdict(_le(added, t.get("cpu_us_per_token_added", 0)))],
            ["Remote engine: time to first delta added by the gateway, p50", f"{_n(ttft, 2)} ms",
             f"≤ {_n(t.get('ttft_added_p50_ms'))} ms", _verdict(_le(ttft, t.get("ttft_added_p50_ms", 0)))]]


def _remote(remote: dict[str, Any] | None) -> str:
    head = "## 6. Remote engine: a gateway in front of an inference server\n\n"
    if not remote:
        return ""
    if "error" in remote:
        return head + f"Failed: `{remote['error']}`\n"
    rows = []
    for mode, name in (("raw", "read directly (a bare aiohttp reader in the gateway process)"),
                       ("gateway", "through the RemoteEngine, Translator and session log")):
        row = remote["modes"][mode]
        lat = row.get("latency_ms", {})
        rows.append([name, _n(row.get("server_cpu_us_per_token")),
                     f"{_n(lat.get('p50'), 2)} / {_n(lat.get('p99'), 2)}", _n(_get(row, "gap_ms", "p99")),
                     f"{_n(row.get('tokens'))} ({_n(row.get('tokens_per_s'), 0)}/s)", *_pcts(row)])
    first = remote.get("ttft_ms", {})
    ttft_rows = [[name, _n(first.get(key, {}).get("n")), _n(first.get(key, {}).get("p50"), 2),
                  _n(first.get(key, {}).get("p90"), 2), _n(first.get(key, {}).get("p99"), 2)]
                 for key, name in (("backend", "straight from the inference server"),
                                   ("proxy", "through a bare aiohttp proxy (`bench/proxy.py`)"),
                                   ("gateway", "through the gateway")) if key in first]
    floor = remote.get("ttft_proxy_added_p50_ms")
    own = (f" A bare proxy adds {_n(floor, 2)} ms, so the gateway's own work is "
           f"{_n(remote['ttft_added_p50_ms'] - floor, 2)} ms of it." if floor is not None
           and remote.get("ttft_added_p50_ms") is not None else "")
    quick = " (**a `--quick` run**: shortened, for trying things out)" if remote.get("quick") else ""
    return (head + f"Run {remote.get('when', '?')}, commit `{remote.get('commit', '?')}`{quick}; the machine was "
            f"{_n(remote['modes']['gateway'].get('machine_busy_before_pct'), 0)} % busy before the CPU runs and "
            f"{_n(remote.get('ttft_machine_busy_before_pct'), 0)} % before the latency run.\n\n"
            "The inference server is hmt-stream's bench server with the ScriptedEngine (stamped tokens at "
            f"{_n(remote['rate'], 0)} tokens/s per stream, not a model) serving `/v1/chat/completions`; the gateway "
            "is the bench server with `remote.endpoints` pointing at it, each in its own process "
            "(`bench/remote.py`). **CPU**: the gateway process's CPU per token while it reads "
            f"{remote['streams']} streams over a {remote['window_s']} s window, first with a bare reader that "
            "parses each chunk and nothing more, then as sessions through the RemoteEngine, the Translator and the "
            "session log, read in the process as the cost suite's *direct* mode does (a transport to the reader "
            "adds what the cost suite measures). Latency is the token's production in the server process to its "
            "arrival in the gateway's reader.\n\n"
            + _table(["mode", "gateway CPU µs/token", "latency p50 / p99 (ms)", "gap p99 (ms)",
                      "tokens in window", "gateway CPU %", "client CPU %", "others' CPU %"], rows)
            + f"\nAdded: **{_n(remote.get('cpu_us_per_token_added'))} µs per token**.\n\n"
            "**Time to first delta**: one streamed `/v1/chat/completions` at a time from this process, request to "
            "the first content chunk, in turn straight from the server, through a bare aiohttp proxy that only "
            "copies the request and the answer (the floor: the extra hop itself, two more processes to wake), and "
            "through the gateway (the same wire every way).\n\n"
            + _table(["path", "requests", "p50 (ms)", "p90 (ms)", "p99 (ms)"], ttft_rows)
            + f"\nAdded at p50: **{_n(remote.get('ttft_added_p50_ms'), 2)} ms**.{own}\n\n"
            "Reading them: with the rest of the machine busy (the *others' CPU* column), every hop through another "
            "process waits for a core, and the gateway's path has two more such hops than the direct one; CPU per "
            "token is far less disturbed than latency. On top of the hop, the gateway's own request path runs its "
            "middlewares (metrics, the guard's host and origin checks, auth), the rate limits, the count of the "
            "prompt's tokens with the local tokenizer (`generation.max_input_tokens`), the scheduler and the "
            "session, and then builds its own request to the server.\n")
