"""Packed forward passes over many sequences at once, each with its keys and values in a slot of its own.

A step packs the new tokens of every running sequence into one row (`input_ids` [1, N], each token with its own
position), so the model's linear layers see all of them at once: one read of the weights for the whole batch. Only
attention must keep the sequences apart; it is registered with transformers' AttentionInterface as `hmt_ragged`:
each sequence writes its new keys and values into its slot of a SlotCache and attends to its own prefix there,
through torch's scaled_dot_product_attention. Two ways to call it:

- per-row: one call per sequence over exactly its own keys, as if it ran alone (CPU, where calls are cheap);
- padded: one call for all single-token (decoding) rows over their slots padded to the longest, with a padding mask
  (CUDA, where a call per row per layer would cost more than the attention itself).

Called without a step (model.generate(), as TransformersEngine does), it is plain sdpa, so one loaded model
serves both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION = "hmt_ragged"
STEP = "hmt_step"  # the forward() keyword that carries a PackedStep down to the attention layers


@dataclass(frozen=True)
class Segment:
    """One sequence's tokens in a packed step."""

    slot: int
    start: int  # where its tokens begin in the packed row
    length: int  # how many tokens it has in this step
    past: int  # how many of its tokens the cache holds already


class SlotCache:
    """Keys and values per layer, [slots, kv_heads, capacity, head_dim], made on first use (shapes and dtype come
    from the model's own key states) and grown in blocks as the longest sequence needs."""

    def __init__(self, slots: int, block: int = 256) -> None:
        self.slots = slots
        self.block = block
        self.capacity = 0
        self._layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def reserve(self, length: int) -> None:
        """Make room for sequences of `length` tokens (layers grow when next used)."""
        if length > self.capacity:
            self.capacity = -(-length // self.block) * self.block

    def layer(self, index: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        held = self._layers.get(index)
        if held is not None and held[0].shape[2] >= self.capacity:
            return held
        shape = (self.slots, like.shape[1], self.capacity, like.shape[3])
        keys = like.new_zeros(shape)
        values = like.new_zeros(shape)
        if held is not None:  # grown: the sequences keep what they had
            keys[:, :, :held[0].shape[2]] = held[0]
            values[:, :, :held[1].shape[2]] = held[1]
        self._layers[index] = (keys, values)
        return keys, values

    def clear(self) -> None:
        self._layers.clear()
        self.capacity = 0


class PackedStep:
    """The segments of one forward pass, with what every layer's attention needs precomputed once."""

    def __init__(self, cache: SlotCache, segments: list[Segment], *, padded: bool, device: Any) -> None:
        self.cache = cache
        cache.reserve(max(segment.past + segment.length for segment in segments))
        singles = [segment for segment in segments if segment.length == 1]
        self.prefills = [segment for segment in segments if segment.length > 1]
        self.masks = {segment.start: _causal(segment, device) for segment in self.prefills}
        # The single-token rows' cache writes happen in one indexed copy per layer, whichever way they attend.
        self.singles = singles
        self.single_slots = _ints([s.slot for s in singles], device)
        self.single_pos = _ints([s.past for s in singles], device)
        self.single_at = _ints([s.start for s in singles], device)
        self.padded = padded and len(singles) > 1
        self.padded_length = max((s.past for s in singles), default=0) + 1
        if self.padded:  # [rows, 1, 1, length]: each row sees its own prefix
            visible = torch.arange(self.padded_length, device=device)[None, :] <= self.single_pos[:, None]
            self.padding_mask = visible[:, None, None]

    def attend(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scaling: float | None) -> torch.Tensor:
        """Attention output [1, N, heads, head_dim] for query/key/value [1, heads, N, head_dim] of this step."""
        keys, values = self.cache.layer(layer, key)
        out = query.new_empty(query.shape)
        gqa = query.shape[1] != key.shape[1]
        if self.singles:
            keys[self.single_slots, :, self.single_pos] = key[0, :, self.single_at].transpose(0, 1)
            values[self.single_slots, :, self.single_pos] = value[0, :, self.single_at].transpose(0, 1)
            if self.padded:
                length = self.padded_length
                q = query[0, :, self.single_at].transpose(0, 1).unsqueeze(2)  # [rows, heads, 1, dim]
                o = F.scaled_dot_product_attention(
                    q, keys[self.single_slots, :, :length], values[self.single_slots, :, :length],
                    attn_mask=self.padding_mask, scale=scaling, enable_gqa=gqa)
                out[0, :, self.single_at] = o[:, :, 0].transpose(0, 1)
            else:
                for s in self.singles:
                    end = s.past + 1
                    out[:, :, s.start:s.start + 1] = F.scaled_dot_product_attention(
                        query[:, :, s.start:s.start + 1], keys[s.slot:s.slot + 1, :, :end],
                        values[s.slot:s.slot + 1, :, :end], scale=scaling, enable_gqa=gqa)
        for s in self.prefills:
            end = s.past + s.length
            new = slice(s.start, s.start + s.length)
            keys[s.slot, :, s.past:end] = key[0, :, new]
            values[s.slot, :, s.past:end] = value[0, :, new]
            mask = self.masks[s.start]
            out[:, :, new] = F.scaled_dot_product_attention(
                query[:, :, new], keys[s.slot:s.slot + 1, :, :end], values[s.slot:s.slot + 1, :, :end],
                attn_mask=mask, is_causal=mask is None, scale=scaling, enable_gqa=gqa)
        return out.transpose(1, 2).contiguous()


def _ints(values: list[int], device: Any) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long, device=device)


def _causal(segment: Segment, device: Any) -> torch.Tensor | None:
    """A prefill chunk's mask over its prefix: token i sees the cache and the chunk up to itself. None when the
    chunk is the whole prefix (then sdpa's own is_causal does it)."""
    if segment.past == 0:
        return None
    end = segment.past + segment.length
    rows = torch.arange(segment.past, end, device=device)[:, None]
    return torch.arange(end, device=device)[None, :] <= rows


def ragged_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: a packed step's attention, or plain sdpa outside one."""
    step = kwargs.pop(STEP, None)
    if step is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    assert isinstance(step, PackedStep)
    layer: Any = module.layer_idx  # an int attribute of every decoder attention module
    return step.attend(int(layer), query, key, value, scaling), None


def use_ragged_attention(model: Any) -> None:
    """Register `hmt_ragged` (with sdpa's masks for the calls outside a step) and switch the model to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, ragged_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    model.set_attn_implementation(ATTENTION)
