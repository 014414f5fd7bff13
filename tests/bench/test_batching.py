"""bench/batching.py cannot rot: its --quick run goes, as `make bench` runs it, through every figure and the report."""

from typing import Any

from bench import batching, cpu, gpu, report


async def test_quick_run_measures_both_engines_and_renders() -> None:
    result: dict[str, Any] = await batching.suite(cpu.Plan.make(quick=True))
    assert result["quick"] is True and result["omp_wait_policy"] == "PASSIVE"
    for engine in batching.ENGINES:
        for sessions in ("1", "2"):
            run = result["runs"][engine][sessions]
            assert run["sessions"] == int(sessions) and run["tokens"] == 6 * int(sessions), (engine, run)
            assert run["tokens_per_s"] > 0 and run["ms_per_token_p50"] > 0 and run["cpu_ms_per_token"] > 0
    assert result["batched_engine"]["max_batch"] == 2
    section = report.render({"batching": result})
    assert "## 7. Batching" in section and "`--quick` run" in section
    assert "| 2 | " in section and "threads / batched" in section


def test_the_verdict_compares_eight_sessions() -> None:
    runs = {"threads": {"8": {"tokens_per_s": 10.0}},
            "batched": {"1": {"ms_per_token_p50": 50.0}, "8": {"tokens_per_s": 35.0, "ms_per_token_p50": 80.0}}}
    assert batching.verdict({"runs": runs}) == {"speedup_at_8": 3.5, "ms_per_token_8_over_1": 1.6}


def test_the_bench_model_is_a_few_hundred_million_parameters() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(gpu.model_config(tiny=False, shape=batching.SHAPE))
    assert type(model).__name__ == "HunYuanDenseV1ForCausalLM"
    assert 1e8 <= sum(p.numel() for p in model.parameters()) <= 3e8
