"""The next token of many sequences at once, each with its own GenerationOptions, the way generate() picks it for one.

generate() applies the repetition penalty to every token of the prompt and of the answer so far, then (when it
samples) temperature, top-k and top-p, then draws; with temperature 0 it takes the argmax of the penalised scores.
Rows that share their options are processed together; the penalty is kept as a mask of the tokens each row has
seen, so a step costs the same however long the sequences are. With top-k on (the model card's 20), only the k best
tokens of each row are warped and drawn from: the same distribution as warping the whole vocabulary (the others'
probability is exactly 0 there), without sorting and drawing over all of it (on CPU, 17 of a step's 20 ms at 8
rows of a 32,000-word vocabulary).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from .base import GenerationOptions


def seeded(options: GenerationOptions, device: Any) -> torch.Generator | None:
    """A generator of its own for a sampled request that names a seed, so that its draws do not depend on what
    runs beside it (None: the shared global generator)."""
    if options.seed is None or options.temperature <= 0:
        return None
    return torch.Generator(device=device).manual_seed(options.seed)


def penalise(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' RepetitionPenaltyLogitsProcessor over a seen-token mask instead of a list of ids: a seen
    token's score is divided by the penalty (multiplied when negative)."""
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def warpers(options: GenerationOptions) -> list[Any]:
    """The logits warpers generate() would build for these sampling options, in its order."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    chain: list[Any] = []
    if options.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(options.temperature))
    if options.top_k > 0:
        chain.append(TopKLogitsWarper(options.top_k))
    if options.top_p < 1.0:
        chain.append(TopPLogitsWarper(options.top_p))
    return chain


def _warped(scores: torch.Tensor, options: GenerationOptions) -> torch.Tensor:
    for warper in warpers(options):
        scores = warper(None, scores)
    return scores


def distribution(scores: torch.Tensor, options: GenerationOptions) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The probabilities each row draws from, after temperature, top-k and top-p (scores [rows, vocab], penalised):
    over the top-k candidates, whose ids come second, when top-k is on; else over the whole vocabulary (None)."""
    ids = None
    if 0 < options.top_k < scores.shape[-1]:
        scores, ids = scores.topk(options.top_k, dim=-1)  # the warpers' top-k is then a no-op
    return torch.softmax(_warped(scores, options), dim=-1), ids


def _key(options: GenerationOptions) -> tuple[float, int, float, float]:
    return options.temperature, options.top_k, options.top_p, options.repetition_penalty


class Sampler:
    """Chooses the next token of rows that live in numbered slots; remembers which tokens each slot has seen."""

    def __init__(self, slots: int, vocab_size: int, device: Any) -> None:
        self.seen = torch.zeros(slots, vocab_size, dtype=torch.bool, device=device)
        self.device = device

    def start(self, slot: int, prompt: Sequence[int]) -> None:
        self.seen[slot] = False
        self.seen[slot, torch.tensor(list(prompt), device=self.device)] = True

    def choose(self, scores: torch.Tensor, slots: Sequence[int], options: Sequence[GenerationOptions],
               generators: Sequence[torch.Generator | None]) -> list[int]:
        """The next token of each row of `scores` [rows, vocab] (row i lives in slots[i])."""
        groups: dict[tuple[float, int, float, float], list[int]] = defaultdict(list)
        for row, option in enumerate(options):
            groups[_key(option)].append(row)
        chosen = torch.empty(len(slots), dtype=torch.long, device=scores.device)
        for rows in groups.values():
            option = options[rows[0]]
            at = torch.tensor(rows, device=scores.device)
            group = scores[at].to(torch.promote_types(scores.dtype, torch.float32))  # as generate(): fp32 at least
            if option.repetition_penalty != 1.0:
                group = penalise(group, self.seen[torch.tensor([slots[r] for r in rows], device=self.device)],
                                 option.repetition_penalty)
            if option.temperature <= 0:
                chosen[at] = group.argmax(dim=-1)
                continue
            probs, ids = distribution(group, option)
            drawn = torch.empty(len(rows), dtype=torch.long, device=scores.device)
            shared = [i for i, row in enumerate(rows) if generators[row] is None]
            if shared:
                drawn[shared] = torch.multinomial(probs[shared], 1).squeeze(1)
            for i, row in enumerate(rows):
                generator = generators[row]
                if generator is not None:
                    drawn[i] = torch.multinomial(probs[i:i + 1], 1, generator=generator)[0, 0]
            chosen[at] = drawn if ids is None else ids.gather(1, drawn[:, None]).squeeze(1)
        self.seen[torch.tensor(list(slots), device=self.device), chosen.to(self.device)] = True
        return [int(token) for token in chosen.tolist()]
