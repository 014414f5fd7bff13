"""Linear layers for a few rows at a time on CPU: the decode steps of a small batch.

torch computes `linear(x, W)` as x·Wᵀ through MKL, whose kernels for a handful of rows run little faster than one
row at a time on some CPUs (AMD's among them). Two better ways, for the large float layers only (small matrices
stay in cache, where every way costs the same; bitsandbytes' 8-bit layers have kernels of their own):

- packed: oneDNN's own copy of the weight, laid out for its matmul kernels once at start-up (what torch's compiler
  does for CPU inference). On this project's 2-core EPYC test machine, 8 rows through a 2816×1024 layer take 1.2 ms
  instead of 3.5 (one row: 0.8 ms), and a prefill chunk of 32 rows 3.0 ms instead of 5.4. It costs a second copy
  of those weights, so it is made only where it fits in half the memory free at start-up; float32 weights only.
- weight-first, where packing is unavailable or does not fit, or for other float dtypes: the same product taken as
  (W·xᵀ)ᵀ streams the weight once for all rows and splits it across threads (1.4 ms for those 8 rows), for up to
  MAX_ROWS rows.

FastLinears installs itself on the model's large layers but acts only in the thread inside `active()` (the batched
engine's decode loop); any other caller of the same model (TransformersEngine's generate()) gets torch's own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import TypeGuard

import psutil
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MAX_ROWS = 64  # weight-first: from about here on, MKL's x·Wᵀ kernels are about as fast
MIN_WEIGHTS = 1 << 18  # smaller matrices stay in cache, where the ways cost the same
PACK_HINT_ROWS = 16  # the row count oneDNN lays the weights out for (any count works)
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # HunYuan's names, as every Llama-like's


def _large(module: object) -> TypeGuard[torch.nn.Linear]:
    return (isinstance(module, torch.nn.Linear) and module.weight.is_floating_point()
            and module.weight.device.type == "cpu" and module.weight.numel() >= MIN_WEIGHTS)


def has_large_linear(model: torch.nn.Module) -> bool:
    """Whether any float layer of the model is large enough for FastLinears to matter (the demo model's are not)."""
    return any(_large(module) for module in model.modules())


def pack(weight: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's packed copy of a float32 weight, or None where this torch cannot make one (or for another dtype)."""
    if weight.dtype != torch.float32:
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_HINT_ROWS)  # type: ignore[no-any-return]
    except (AttributeError, RuntimeError):
        return None


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")  # type: ignore[no-any-return]


def weight_first_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    # Contiguous again: a transposed result would send attention and every element-wise op after it down their
    # slow strided paths.
    out = torch.mm(weight, x.reshape(rows, x.shape[-1]).t()).t().contiguous()
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


class _Fused:
    """Sibling layers that read the same input (q/k/v, gate/up), packed as one matrix: the first of them called on
    an input computes all their outputs, the others take theirs (one pass over the weights, fewer calls: on this
    project's test machine, 8 rows through q, k and v take 0.86 ms instead of 1.07)."""

    def __init__(self, layers: list[torch.nn.Linear], packed: torch.Tensor) -> None:
        self.packed = packed
        biases = [layer.bias for layer in layers]
        self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases if b is not None])
        self.sizes = [layer.out_features for layer in layers]
        self.input: torch.Tensor | None = None
        self.outputs: list[torch.Tensor | None] = []

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self.input is not x or self.outputs[index] is None:
            whole = packed_linear(x, self.packed, self.bias)
            self.input, self.outputs = x, [part.contiguous() for part in whole.split(self.sizes, dim=-1)]
        out = self.outputs[index]
        assert out is not None
        self.outputs[index] = None
        if not any(part is not None for part in self.outputs):
            self.input = None  # all taken: hold on to nothing
        return out


def _siblings(model: torch.nn.Module) -> Iterator[list[torch.nn.Linear]]:
    for module in model.modules():
        for names in SIBLINGS:
            group = [layer for layer in (getattr(module, name, None) for name in names) if _large(layer)]
            if (len(group) == len(names) and len({layer.in_features for layer in group}) == 1
                    and len({layer.bias is None for layer in group}) == 1):
                yield group


class FastLinears:
    """The large float nn.Linear layers of a model, computed packed (float32; siblings fused) or weight-first by the
    thread inside `active()` whenever a call has 2 rows or more (one row is memory-bound: torch's own is as fast)."""

    def __init__(self, model: torch.nn.Module, *, packed: bool | None = None) -> None:
        """packed None: where oneDNN can pack and the copies fit in half the free memory; False: weight-first."""
        self._local = threading.local()
        layers = [module for module in model.modules() if _large(module)]
        size = sum(module.weight.numel() * module.weight.element_size() for module in layers)
        if packed is None:
            packed = size <= psutil.virtual_memory().available // 2
            if not packed:
                log.info("weight-first linears: packed copies (%.1f GB) would not fit in half the free memory",
                         size / 1e9)
        self.fused = 0
        if packed:
            for group in _siblings(model):
                whole = pack(torch.cat([layer.weight.detach() for layer in group]))
                if whole is None:
                    break
                fused = _Fused(group, whole)
                for index, layer in enumerate(group):
                    layer.forward = functools.partial(self._fused_forward, layer, fused, index)  # type: ignore[method-assign]
                    layers.remove(layer)
                self.fused += len(group)
        copies: dict[int, torch.Tensor | None] = {}  # a weight shared by two layers (tied embeddings) packed once
        for module in layers:
            key = id(module.weight)
            if key not in copies:
                copies[key] = pack(module.weight) if packed else None
            module.forward = functools.partial(self._forward, module, copies[key])  # type: ignore[method-assign]
        self.layers = len(layers) + self.fused
        self.packed = self.layers > 0 and all(copy is not None for copy in copies.values()) and bool(packed)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def _rows(self, x: torch.Tensor) -> int:
        """The rows of x when this thread is inside active(), else 0."""
        if not getattr(self._local, "on", False) or not x.shape[-1]:
            return 0
        return x.numel() // x.shape[-1]

    def _forward(self, module: torch.nn.Linear, packed: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows(x)
        if rows > 1 and packed is not None:
            return packed_linear(x, packed, module.bias)
        if 1 < rows <= MAX_ROWS:
            return weight_first_linear(x, module.weight, module.bias)
        return F.linear(x, module.weight, module.bias)

    def _fused_forward(self, module: torch.nn.Linear, fused: _Fused, index: int, x: torch.Tensor) -> torch.Tensor:
        if self._rows(x) > 1:
            return fused.output(index, x)
        return F.linear(x, module.weight, module.bias)
