"""The CPU benchmark's parts stay in step with the server: clients against a real bench server, figures, report."""

import json
from pathlib import Path

import pytest

from bench import remote, report
from bench.clients import TRANSPORTS, Stream, http_session
from bench.cpu import TARGETS, Plan, holds
from bench.harness import Server, Snapshot, load, window_figures
from hmt_stream.engine.scripted import Script


def test_a_stream_takes_in_deltas_and_the_terminal_event() -> None:
    stream = Stream()
    assert not stream.absorb('{"session":"s","seq":2,"type":"delta","text":"[t=100]x[t=150]y"}', 1000)
    assert stream.first == 1000 and stream.stamps == [100, 150] and stream.recv == [1000, 1000]
    assert stream.absorb('{"session":"s","seq":3,"type":"done","text":"xy","cached":true}', 2000)
    assert stream.terminal == "done" and stream.cached and stream.end == 2000


def test_window_figures_count_only_the_window() -> None:
    ms = 1_000_000
    stream = Stream(recv=[10 * ms, 20 * ms, 30 * ms, 40 * ms], stamps=[9 * ms, 18 * ms, 27 * ms, 36 * ms])
    a, b = Snapshot(15 * ms, 0.0, 0.0, 0.0), Snapshot(35 * ms, 0.001, 0.0, 0.001)
    figures = window_figures([stream], a, b, rate=20)
    assert figures["tokens"] == 2  # the arrivals at 20 and 30 ms
    assert figures["latency_ms"]["max"] == 3.0 and figures["gap_ms"]["p50"] == 10.0
    assert figures["server_cpu_us_per_token"] == 500.0 and figures["server_cpu_pct"] == 5.0


def test_a_step_is_held_within_the_gap_limit() -> None:
    step = {"gap_ms": {"p99": TARGETS["gap_p99_limit_ms"]}, "errors": 0, "tokens_per_s": 95.0,
            "expected_tokens_per_s": 100.0}
    assert holds(step)
    assert not holds({**step, "gap_ms": {"p99": TARGETS["gap_p99_limit_ms"] + 1}})
    assert not holds({**step, "errors": 1})
    assert not holds({**step, "tokens_per_s": 80.0})


async def test_every_mode_streams_from_a_real_bench_server() -> None:
    script = Script(tokens=12, rate=100, stamp=True, text="x")
    async with Server() as server, http_session() as http:
        for mode in ("direct", *TRANSPORTS):
            figures = await load(server, http, mode, streams=3, text=f"smoke {mode} {{i}} {script.directive()}",
                                 rate=100, stagger_s=0.02, begin_s=0.04, end_s=0.1)
            assert figures["errors"] == 0 and figures["unfinished"] == 0, (mode, figures)
            assert figures["tokens"] > 0 and figures["latency_ms"]["p50"] < 1000, (mode, figures)


def test_the_report_renders_without_figures_and_files_gpu_results(tmp_path: Path) -> None:
    text = report.render({})
    assert "# Benchmarks" in text and "Not run yet" in text
    report.write({"when": "now", "cost": {"streams": 1, "rate": 20.0, "window_s": 1.0, "modes": {}}}, tmp_path)
    report.file_gpu_results({"tiny": True}, tmp_path)
    saved = json.loads((tmp_path / "benchmarks.json").read_text())
    assert saved["when"] == "now" and saved["gpu"] == {"tiny": True}  # a GPU run keeps the CPU figures
    assert "## 1. Server cost per token" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.slow
async def test_the_remote_suite_runs_against_real_bench_servers() -> None:
    plan = Plan(quick=True, cost_streams=3, cost_window_s=0.5, ttft_requests=1, quiet_budget_s=0.0)
    figures = await remote.suite(plan)
    for mode in ("raw", "gateway"):
        row = figures["modes"][mode]
        assert row["tokens"] > 0 and row["unfinished"] == 0, (mode, row)
    assert figures["cpu_us_per_token_added"] is not None
    assert figures["ttft_ms"]["backend"]["n"] == figures["ttft_ms"]["proxy"]["n"] == \
        figures["ttft_ms"]["gateway"]["n"] == 10  # the bare proxy (the floor) answered every request too
    assert figures["ttft_proxy_added_p50_ms"] is not None
    rendered = report.render({"remote": figures})
    assert "## 6. Remote engine" in rendered and "through a bare aiohttp proxy" in rendered
