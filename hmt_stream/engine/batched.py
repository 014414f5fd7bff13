"""BatchedEngine: one decode loop per model serves every running generation; they share each forward pass.

A thread runs the loop. Each turn it takes in the generations that arrived (up to max_batch of them run, the rest
wait for a slot), lets the cancelled ones go, and runs one packed forward pass (ragged.py) holding the next token of
every decoding row plus at most `prefill_chunk` prompt tokens of the rows still reading their prompt, so that a long
prompt is read in pieces between the others' tokens instead of stalling them. Then each row's next token is chosen
with that row's own options (sampling.py), its text streamed through an IncrementalDecoder, and a row that is done
(end token, max_new_tokens, cancelled) leaves at once and frees its slot for the next.

Decoding reads every weight once per step whatever the batch, so on a GPU eight rows cost about what one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import BridgedGeneration, ChatPrompt, GenerationOptions
from .cpu_linear import FastLinears, has_large_linear
from .ragged import STEP, PackedStep, Segment, SlotCache, use_ragged_attention
from .sampling import Sampler, seeded
from .sizing import CPU_PREFILL_CHUNK, CUDA_PREFILL_CHUNK, auto_batch
from .streaming import IncrementalDecoder
from .transformers import LocalEngine

log = logging.getLogger(__name__)


class BatchedGeneration(BridgedGeneration):
    """One row of the batch, as the translator sees it; wait_closed() returns once the row has left the batch."""

    def __init__(self) -> None:
        super().__init__()
        self._closed: asyncio.Future[None] = self._loop.create_future()

    def end(self, error: BaseException | None = None) -> None:
        super().end(error)
        self._call(self._set_closed)

    def _set_closed(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


@dataclass(eq=False)
class _Row:
    generation: BatchedGeneration
    prompt: Sequence[int]
    options: GenerationOptions
    decoder: IncrementalDecoder
    generator: Any  # torch.Generator | None: its own draws when the request names a seed
    slot: int = -1
    past: int = 0  # tokens of this row in the cache
    next: int | None = None  # the token to feed next; None while the prompt is still being read
    generated: int = 0
    chosen_at: int = -1  # this step: where its last token sits in the packed row, if it samples


class BatchedEngine(LocalEngine):
    """Every running generation shares one forward pass per step (model.batching = true)."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, demo: bool, max_batch: int = 0,
                 max_tokens: int = 0, prefill_chunk: int = 0, attention: str = "auto",
                 fast_linears: bool | None = None) -> None:
        """max_batch 0: auto (auto_batch; max_tokens is the longest a sequence may grow, prompt and answer);
        prefill_chunk 0: auto; attention: per-row, padded or auto; fast_linears None: auto (cpu_linear.py)."""
        super().__init__(model, tokenizer, model_id=model_id, demo=demo)
        cuda = self.device.startswith("cuda")
        self.max_batch = max_batch or auto_batch(model, max_tokens)
        self.prefill_chunk = prefill_chunk or (CUDA_PREFILL_CHUNK if cuda else CPU_PREFILL_CHUNK)
        if attention not in ("auto", "per-row", "padded"):
            raise ValueError(f"attention must be auto, per-row or padded, not {attention!r}")
        self.padded = attention == "padded" or (attention == "auto" and cuda)
        large = has_large_linear(model)
        use_fast = (not cuda and large) if fast_linears is None else fast_linears
        self._linears = FastLinears(model) if use_fast else None
        self.linears = "torch" if self._linears is None else "packed" if self._linears.packed else "weight-first"
        # A model this small (the demo) gains nothing from splitting its tiny matmuls across threads, and MKL
        # threads that spin-wait for one another make each of them take milliseconds on a busy machine.
        self.one_thread = not cuda and not large
        use_ragged_attention(model)
        self._cache = SlotCache(self.max_batch)
        self._sampler = Sampler(self.max_batch, model.config.vocab_size, model.device)
        self._end_ids = frozenset(self._eos)
        self._wake = threading.Condition()
        self._pending: deque[_Row] = deque()
        self._rows: list[_Row] = []
        self._free = list(range(self.max_batch))
        self._closing = False
        self.steps = 0
        self.peak_rows = 0  # the most rows the batch has held at once (tests and benchmarks read it)
        self._thread = threading.Thread(target=self._loop, name="hmt-decode", daemon=True)
        self._thread.start()

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> BatchedGeneration:
        generation = BatchedGeneration()
        row = _Row(generation, self.prompt_ids(prompt), options, IncrementalDecoder(self.tokenizer),
                   seeded(options, self.model.device))
        with self._wake:
            if self._closing:
                raise RuntimeError("the engine has closed")
            self._pending.append(row)
            self._wake.notify()
        return generation

    async def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        await asyncio.to_thread(self._thread.join)

    # -- the decode loop (its own thread) ----------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        if self.one_thread:
            torch.set_num_threads(1)  # this thread's own setting (OpenMP keeps it per thread)
        while True:
            with self._wake:
                if not (self._closing or self._pending or self._rows):
                    self._cache.clear()  # idle: give back what the longest sequences took
                while not (self._closing or self._pending or self._rows):
                    self._wake.wait()
                if self._closing:
                    break
                joined = self._take_in()
            for row in joined:
                self._sampler.start(row.slot, row.prompt)
            for row in [row for row in self._rows if row.generation.stop_requested.is_set()]:
                self._leave(row)
            if not self._rows:
                continue
            try:
                with torch.inference_mode():
                    self._step(torch)
            except Exception as exc:  # the model failed (out of memory, say): these rows fail, the loop goes on
                log.exception("a decode step failed; ending the %d generations in it", len(self._rows))
                for row in list(self._rows):
                    self._leave(row, exc)
                self._cache.clear()
        closed = RuntimeError("the engine has closed")
        for row in list(self._rows):
            self._leave(row, closed)
        with self._wake:
            for row in self._pending:
                row.generation.end(closed)
            self._pending.clear()

    def _take_in(self) -> list[_Row]:
        joined = []
        while self._pending and self._free:
            row = self._pending.popleft()
            if row.generation.stop_requested.is_set() or row.options.max_new_tokens <= 0:
                row.generation.end()
                continue
            row.slot = heapq.heappop(self._free)
            self._rows.append(row)
            joined.append(row)
        return joined

    def _leave(self, row: _Row, error: BaseException | None = None) -> None:
        self._rows.remove(row)
        heapq.heappush(self._free, row.slot)
        if error is None:
            row.generation.emit(row.decoder.flush())
        row.generation.end(error)

    def _step(self, torch: Any) -> None:
        segments: list[Segment] = []
        tokens: list[int] = []
        sampling: list[_Row] = []
        for row in self._rows:
            if row.next is not None:
                segments.append(Segment(row.slot, len(tokens), 1, row.past))
                tokens.append(row.next)
                row.chosen_at = len(tokens) - 1
                sampling.append(row)
        budget = self.prefill_chunk
        for row in self._rows:
            if row.next is None and budget > 0:
                length = min(budget, len(row.prompt) - row.past)
                segments.append(Segment(row.slot, len(tokens), length, row.past))
                tokens.extend(row.prompt[row.past:row.past + length])
                budget -= length
                if row.past + length == len(row.prompt):
                    row.chosen_at = len(tokens) - 1
                    sampling.append(row)
        device = self.model.device
        positions = [s.past + i for s in segments for i in range(s.length)]
        step = PackedStep(self._cache, segments, padded=self.padded, device=device)
        with self._linears.active() if self._linears is not None else contextlib.nullcontext():
            logits = self.model(input_ids=torch.tensor([tokens], device=device),
                                position_ids=torch.tensor([positions], device=device), use_cache=False,
                                logits_to_keep=torch.tensor([row.chosen_at for row in sampling], dtype=torch.long,
                                                            device=device),
                                **{STEP: step}).logits[0]
        by_slot = {row.slot: row for row in self._rows}
        for segment in segments:
            by_slot[segment.slot].past += segment.length
        self.steps += 1
        self.peak_rows = max(self.peak_rows, len(self._rows))
        if not sampling:
            return
        chosen = self._sampler.choose(logits, [row.slot for row in sampling], [row.options for row in sampling],
                                      [row.generator for row in sampling])
        for row, token in zip(sampling, chosen, strict=True):
            row.generated += 1
            row.generation.tokens += 1
            row.generation.emit(row.decoder.push([token]))
            if token in self._end_ids or row.generated >= row.options.max_new_tokens:
                self._leave(row)
            else:
                row.next = token
