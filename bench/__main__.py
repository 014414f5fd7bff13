"""`make bench` (python -m bench): run the CPU suite, write docs/benchmarks.json and docs/benchmarks.md.

    python -m bench                  # the whole CPU suite (a few minutes)
    python -m bench --quick          # a small version of every figure, to try changes out (nothing is written
                                     # unless --out is given)
    python -m bench --only cost,cache

Targets are reported against, never asserted. GPU figures come from `python -m bench.gpu --write` on a CUDA machine
and are kept in the JSON file across CPU runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import batching, cpu, documents, remote, replicas, report
from .server import raise_file_limit

SUITES = {
    "cost": cpu.cost,
    "concurrency": cpu.concurrency,
    "idle_ws": cpu.idle_websockets,
    "cache": cpu.cache,
    "ttft": cpu.ttft,
    "batching": batching.suite,
    "documents": documents.documents,
    "remote": remote.suite,
    "replicas": replicas.suite,
}


async def run(plan: cpu.Plan, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in only:
        began = time.monotonic()
        plan.log(f"{name} ...")
        try:
            results[name] = await SUITES[name](plan)
        except Exception as exc:  # one broken suite should not lose the others' figures
            plan.log(f"{name} failed: {type(exc).__name__}: {exc}")
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        plan.log(f"{name}: {time.monotonic() - began:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small versions of every figure (a try-out)")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated, of: {', '.join(SUITES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for benchmarks.json and benchmarks.md (default: docs/, not with --quick)")
    args = parser.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    unknown = set(only) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    out = args.out or (None if args.quick else report.DOCS)
    raise_file_limit()
    plan = cpu.Plan.make(args.quick)
    began = time.monotonic()
    started = report.machine()
    results = asyncio.run(run(plan, only))
    results = {
        "when": time.strftime("%Y-%m-%d %H:%M %Z"),
        "quick": args.quick,
        "duration_s": round(time.monotonic() - began),
        "machine": started,
        "load_after": report.load_average(),
        "quiet_wait_s": round(plan.waited_s, 1),
        "retries": plan.retries,
        "targets": cpu.TARGETS,
        **results,
    }
    if out is None:
        print(json.dumps(results, indent=2))
        return 0
    path = report.write(results, out)
    print(f"wrote {path} and {path.with_suffix('.md')} in {results['duration_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
