import pytest
import torch
import torch.nn.functional as F

from hmt_stream.engine.cpu_linear import MAX_ROWS, MIN_WEIGHTS, WeightFirstLinear, has_large_linear


def test_weight_first_is_the_same_product_up_to_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    mm, weight_first = torch.mm, []

    def counted(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        weight_first.append(tuple(a.shape))
        return mm(a, b)

    monkeypatch.setattr(torch, "mm", counted)
    torch.manual_seed(0)
    weight, bias = torch.randn(1024, 1024), torch.randn(1024)
    assert weight.numel() >= MIN_WEIGHTS
    for rows in (1, 2, 8, MAX_ROWS, MAX_ROWS + 1):
        x = torch.randn(1, rows, 1024)
        with WeightFirstLinear():
            ours = F.linear(x, weight, bias)
        plain = F.linear(x, weight, bias)
        exact = F.linear(x.double(), weight.double(), bias.double())
        assert ours.shape == (1, rows, 1024)
        # Sums of 1024 products of about 1 in float32: both ways are off by some 1e-5, neither more than the other.
        assert (ours - exact).abs().max() < 2e-4 and (plain - exact).abs().max() < 2e-4
        if rows == 1 or rows > MAX_ROWS:
            assert torch.equal(ours, plain)  # left to torch
    assert weight_first == [(1024, 1024)] * 3  # 2, 8 and MAX_ROWS rows


def test_only_large_float_layers_count() -> None:
    assert not has_large_linear(torch.nn.Sequential(torch.nn.Linear(64, 128)))
    assert has_large_linear(torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(1024, 1024)))
