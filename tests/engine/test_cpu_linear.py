import threading
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from hmt_stream.engine import cpu_linear
from hmt_stream.engine.cpu_linear import MAX_ROWS, MIN_WEIGHTS, FastLinears, has_large_linear


def _model() -> torch.nn.Sequential:  # a large layer, then one too small to matter
    torch.manual_seed(0)
    large, small = torch.nn.Linear(1024, 1024), torch.nn.Linear(64, 1024)
    assert large.weight.numel() >= MIN_WEIGHTS > small.weight.numel()
    return torch.nn.Sequential(large, small)


def _in_another_thread(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: list[torch.Tensor] = []
    other = threading.Thread(target=lambda: out.append(layer(x)))
    other.start()
    other.join()
    return out[0]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "weight-first"])
def test_fast_linears_are_the_same_product_up_to_rounding_and_only_in_the_active_thread(
        packed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("packed_linear", "weight_first_linear"):
        original = getattr(cpu_linear, name)

        def counted(*args: torch.Tensor | None, _name: str = name, _original: Any = original) -> torch.Tensor:
            calls.append(_name)
            return _original(*args)  # type: ignore[no-any-return]

        monkeypatch.setattr(cpu_linear, name, counted)
    model = _model()
    layer = model[0]
    assert isinstance(layer, torch.nn.Linear)
    fast = FastLinears(model, packed=packed)
    assert fast.layers == 1 and fast.packed is packed
    for rows in (1, 2, 8, MAX_ROWS, MAX_ROWS + 1):
        x = torch.randn(1, rows, 1024)
        plain = F.linear(x, layer.weight, layer.bias)
        assert torch.equal(layer(x), plain)  # outside active(): torch's own
        with fast.active():
            ours = layer(x)
            elsewhere = _in_another_thread(layer, x)  # another user of the same model meanwhile
        assert torch.equal(elsewhere, plain)
        exact = F.linear(x.double(), layer.weight.double(), layer.bias.double())
        assert ours.shape == (1, rows, 1024) and ours.is_contiguous()
        # Sums of 1024 products in float32: every way is off by some 1e-5, none more than the others.
        assert (ours - exact).abs().max() < 2e-4 and (plain - exact).abs().max() < 2e-4
        if rows == 1 or (rows > MAX_ROWS and not packed):
            assert torch.equal(ours, plain)  # left to torch
    way = "packed_linear" if packed else "weight_first_linear"
    assert calls == [way] * (4 if packed else 3)  # 2, 8, MAX_ROWS (and more, packed) rows; once per call


def test_a_weight_shared_by_two_layers_is_packed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    packs: list[torch.Tensor] = []
    original = cpu_linear.pack

    def counted(weight: torch.Tensor) -> torch.Tensor | None:
        packs.append(weight)
        return original(weight)

    monkeypatch.setattr(cpu_linear, "pack", counted)
    model = _model()
    tied = torch.nn.Linear(1024, 1024)
    tied.weight = model[0].weight  # type: ignore[assignment]  # as tied embedding and output layers are
    fast = FastLinears(torch.nn.Sequential(model, tied), packed=True)
    assert fast.layers == 2 and len(packs) == 1


class _Attention(torch.nn.Module):  # the names HunYuan's attention gives its projections
    def __init__(self) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (torch.nn.Linear(1024, n, bias=False) for n in (1024, 512, 512))
        self.o_proj = torch.nn.Linear(1024, 1024, bias=False)


def test_siblings_reading_one_input_are_computed_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    original = cpu_linear.packed_linear

    def counted(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return original(x, packed, bias)

    monkeypatch.setattr(cpu_linear, "packed_linear", counted)
    torch.manual_seed(0)
    attention = _Attention()
    fast = FastLinears(attention, packed=True)
    assert (fast.layers, fast.fused, fast.packed) == (4, 3, True)
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    first, second = torch.randn(1, 8, 1024), torch.randn(1, 8, 1024)
    with fast.active():
        ours = [layer(first) for layer in projections]
        assert len(calls) == 1  # q computed all three
        mixed = [attention.q_proj(second), attention.o_proj(second), attention.k_proj(second)]
        again = attention.q_proj(second)  # taken already: computed anew, not served twice
    assert len(calls) == 4
    for layer, out in zip(projections, ours, strict=True):
        assert out.shape == (1, 8, layer.out_features) and out.is_contiguous()
        assert torch.allclose(out, F.linear(first, layer.weight), atol=2e-4)
    for layer, out in zip((attention.q_proj, attention.o_proj, attention.k_proj, attention.q_proj),
                          (*mixed, again), strict=True):
        assert torch.allclose(out, F.linear(second, layer.weight), atol=2e-4)


def test_only_large_float_layers_count_and_only_float32_ones_are_packed() -> None:
    assert not has_large_linear(torch.nn.Sequential(torch.nn.Linear(64, 128)))
    assert has_large_linear(torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(1024, 1024)))
    layer = torch.nn.Linear(1024, 1024, dtype=torch.bfloat16)
    half = torch.nn.Sequential(layer)
    assert has_large_linear(half)
    fast = FastLinears(half, packed=True)
    assert fast.layers == 1 and not fast.packed  # weight-first: oneDNN packs float32 here
    x = torch.randn(1, 4, 1024, dtype=torch.bfloat16)
    with fast.active():
        assert torch.allclose(half(x).float(), F.linear(x, layer.weight).float(), atol=0.5)
