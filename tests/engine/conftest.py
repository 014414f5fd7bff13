"""Engines of their own over the demo checkpoint: BatchedEngines made per test (each with its own decode thread)
and closed after it, and one TransformersEngine for the tests of that engine whatever the shared one is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hmt_stream.engine import Generation
from hmt_stream.engine.batched import BatchedEngine
from hmt_stream.engine.transformers import TransformersEngine

MakeBatched = Callable[..., BatchedEngine]


@pytest.fixture(scope="session")
def threads(demo_dir: Path) -> Iterator[TransformersEngine]:
    """TransformersEngine (model.batching = false), a generate() per worker thread."""
    engine = TransformersEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu", workers=4)
    yield engine
    engine._executor.shutdown(wait=True)


@pytest.fixture
async def make_batched(demo_dir: Path) -> AsyncIterator[MakeBatched]:
    """make_batched(float64=True, ids=False, **BatchedEngine options): the demo model in a BatchedEngine of its
    own; with ids, its text is the token ids (IdsAsText).

    float64: the demo model's random weights put many next-token scores within float32 rounding of each other,
    so a sum taken in another order (a matmul over 8 rows is not 8 matmuls over one) can flip a greedy choice.
    In float64 the rounding is 2^29 times finer: what the batch changes must then come from the batching itself
    (masks, positions, slots, penalties), which is what the equality tests are about."""
    engines: list[BatchedEngine] = []

    def make(*, float64: bool = True, ids: bool = False, **options: Any) -> BatchedEngine:
        import torch

        engine = BatchedEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu", **options)
        if float64:
            engine.model.to(torch.float64)
        if ids:
            engine.tokenizer = IdsAsText(engine.tokenizer)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


class IdsAsText:
    """A tokenizer whose decode() writes every id as `<id>`, special ones included: the demo model's random
    answers decode to little text (mostly one repeated piece, or nothing), which would hide which tokens came."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        return "".join(f"<{int(i)}>" for i in ids)


async def read(generation: Generation) -> tuple[str, int]:
    """The whole text of a generation and its token count, once it has left the engine."""
    text = "".join([delta async for delta in generation])
    await generation.wait_closed()
    return text, generation.tokens
