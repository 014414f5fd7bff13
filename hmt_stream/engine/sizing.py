"""How big the batch and the prompt chunks of BatchedEngine are when left to it, per device."""

from __future__ import annotations

from typing import Any

# Batch sizes when scheduler.max_concurrent is 0 (auto); see the README's "Batching" section for why.
CPU_BATCH, CUDA_BATCH = 8, 64
# Most prompt tokens read in one step. A CPU's decode step is compute-bound from a few rows on, so a chunk of 32
# costs the running rows a few steps' time; a GPU reads 512 in about the time of a decode step of a full batch.
CPU_PREFILL_CHUNK, CUDA_PREFILL_CHUNK = 32, 512


def kv_bytes_per_token(config: Any, dtype: Any) -> int:
    """Bytes of keys and values one token takes in the cache: 128 KiB for Hunyuan-MT-7B in bf16."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return int(2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype.itemsize)


def batch_that_fits(free_bytes: int, per_token: int, max_tokens: int, most: int) -> int:
    """How many sequences of max_tokens fit in 90 % of free_bytes, between 1 and `most`."""
    return max(1, min(most, int(0.9 * free_bytes) // max(1, per_token * max_tokens)))


def auto_batch(model: Any, max_tokens: int) -> int:
    """The batch size for scheduler.max_concurrent = 0: CPU_BATCH on a CPU; on CUDA, CUDA_BATCH or as many as the
    cache of max_tokens-long sequences fits in the memory left free after loading (a 24 GB card holding the 7B
    model in bf16 fits about 20 of 2,560 tokens)."""
    device = getattr(model, "device", None)
    if device is None or device.type != "cuda":
        return CPU_BATCH
    if max_tokens <= 0:
        return CUDA_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return batch_that_fits(free, kv_bytes_per_token(model.config, model.dtype), max_tokens, CUDA_BATCH)
