"""bench/gpu.py cannot rot: its --tiny run (CPU, tiny config) goes through every figure it measures on a GPU."""

import json
from pathlib import Path
from typing import Any

from bench import gpu, report


def errors_in(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        found = [f"{path}: {node['error']}"] if "error" in node else []
        for key, value in node.items():
            found += errors_in(value, f"{path}/{key}")
        return found
    return []


def test_the_full_shape_is_hunyuan_mt_7b() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(gpu.model_config(tiny=False), dtype=torch.bfloat16)
    assert type(model).__name__ == "HunYuanDenseV1ForCausalLM"
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert 7.4e9 < sum(p.numel() for p in model.parameters()) < 7.6e9
    assert gpu.weight_bytes(model) == 2 * sum(p.numel() for p in model.parameters())


def test_tiny_run_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    printed: list[str] = []
    result = gpu.main(["--tiny", "--json", str(out)], out=printed.append)
    assert json.loads(out.read_text()) == json.loads(printed[0]) == result
    assert errors_in(result) == []
    assert result["tiny"] is True and result["copy_bandwidth_GBps"] > 0
    for mode in ("bf16", "int8"):
        figures = result["modes"][mode]
        assert figures["bound_tokens_per_s"] > 0 and figures["prompt_tokens"] == 40
        assert figures["decode"]["dynamic"]["tokens_per_s"] > 0
        assert figures["decode"]["static"]["tokens_per_s"] > 0
        assert "skipped" in figures["decode"]["static+compile"]
        assert "engine_first_delta_ms_p50" in figures
        for engine in ("threads", "batched"):
            run = figures["streams"][engine]["3"]
            assert run["tokens"] > 0 and run["tokens_per_s"] > 0, (mode, engine, run)
    assert result["modes"]["int8"]["weight_bytes"] < result["modes"]["bf16"]["weight_bytes"]
    section = report.render({"gpu": result})
    assert "--tiny" in section and "| bf16 | dynamic |" in section and "| int8 | batched | 3 |" in section
