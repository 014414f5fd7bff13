"""GPU benchmark: the full-size Hunyuan-MT-7B architecture with random weights, in bf16 and in 8-bit.

Decode speed does not depend on the weights' values, so random weights of the right shapes (HunYuanDenseV1:
32 layers, hidden 4096, 32 heads, 8 KV heads, FFN 14336, vocabulary 128,167, tied embeddings: 7.5 B parameters)
stand for the real model, which cannot be downloaded where this is written. Built straight on the device, so it
takes seconds, not the minutes a CPU init and copy would. Figures, per mode (bf16, int8 = bitsandbytes LLM.int8):

- the device's copy bandwidth and the bandwidth bound on batch-1 decode: weight bytes ÷ bandwidth;
- batch-1 decode tokens/s and time to first token (100-token prompt) from model.generate with the dynamic cache
  (what TransformersEngine does today), a static cache, and a static cache compiled (transformers compiles the
  decode step by itself when a static cache is used on CUDA);
- the first delta through TransformersEngine (tokenizer, worker thread, incremental decoder included);
- aggregate tokens/s at 8, 32 and 64 concurrent streams through the Translator, once with TransformersEngine
  (one generate() per worker thread: model.batching = false) and once with BatchedEngine (every stream in one
  decode loop, the default).

    python -m bench.gpu                 # on a CUDA machine; prints the figures and writes --json
    python -m bench.gpu --write         # also files them into docs/benchmarks.json and docs/benchmarks.md
    python -m bench.gpu --tiny          # a tiny config on CPU, so that the script cannot rot (tests/bench)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hmt_stream.app import build_translator
from hmt_stream.config import Settings
from hmt_stream.engine import ChatPrompt, Engine, GenerationOptions
from hmt_stream.engine.demo import CHAT_TEMPLATE
from hmt_stream.prompts import build_prompt
from hmt_stream.request import TranslationRequest

from .stats import percentile

# Hunyuan-MT-7B's shape (its config.json); rope scaling and the like do not change the cost of a step.
FULL_SHAPE: dict[str, Any] = {
    "vocab_size": 128167, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
}
TINY_SHAPE: dict[str, Any] = {
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
}
TARGETS = {"decode_fraction_of_bound": 0.75, "ttft_p50_ms": 25.0, "tokens_per_s_at_64": 3000.0}
SPECIAL_TOKENS = ["<|pad|>", "<|startoftext|>", "<|eos|>", "<|extra_0|>", "<|extra_4|>", "[UNK]"]
PAD, BOS, EOS = 0, 1, 2


# -- the model, its tokenizer, the device ------------------------------------------------------------------------

def model_config(tiny: bool, shape: dict[str, Any] | None = None) -> Any:
    from transformers import HunYuanDenseV1Config

    shape = shape or (TINY_SHAPE if tiny else FULL_SHAPE)
    return HunYuanDenseV1Config(**shape, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, eod_token_id=EOS)


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer as large as the model's vocabulary, so every id the model picks decodes to a word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|startoftext|>", eos_token="<|eos|>", pad_token="<|pad|>",
        unk_token="[UNK]", additional_special_tokens=["<|extra_0|>", "<|extra_4|>"], chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=32768,
    )


def build_model(config: Any, device: str, mode: str) -> Any:
    """Random weights, allocated and initialised on the device itself; mode 'int8' then quantises the layers."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    if mode == "int8":
        quantize_int8(model, device)
    model.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    return model


def quantize_int8(model: Any, device: str, threshold: float = 6.0) -> None:
    """Swap every Linear of the decoder layers for bitsandbytes' Linear8bitLt, as load_in_8bit does (lm_head and
    the tied embeddings stay in bf16, threshold 6.0 is BitsAndBytesConfig's default)."""
    import torch
    from bitsandbytes.nn.modules import Int8Params, Linear8bitLt

    for parent in list(model.model.layers.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            int8 = Linear8bitLt(child.in_features, child.out_features, bias=child.bias is not None,
                                has_fp16_weights=False, threshold=threshold, device="meta")
            int8.weight = Int8Params(child.weight.data, requires_grad=False, has_fp16_weights=False)._quantize(device)
            if child.bias is not None:
                int8.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, int8)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def weight_bytes(model: Any) -> int:
    """Bytes of weights one decode step reads: every parameter once (parameters() yields tied ones once), plus
    the scales of int8 weights."""
    total = 0
    for param in model.parameters():
        total += param.numel() * param.element_size()
        scales = getattr(param, "SCB", None)
        if scales is not None:
            total += scales.numel() * scales.element_size()
    return total


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str, mib: int, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy (each copy reads and writes the buffer once)."""
    import torch

    source = torch.ones(mib * 2**20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize(device)
    return 2 * source.numel() * repeats / (time.perf_counter() - began)


def machine(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    try:
        import bitsandbytes

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    return info


# -- batch-1 decode and time to first token ------------------------------------------------------------------------

class _TokenClock:
    """A generate() streamer that notes when each new token reaches the host (it waits for it, as ours does)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        value.tolist()
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def timed_generate(model: Any, ids: list[int], new_tokens: int, **kwargs: Any) -> tuple[float, float]:
    """(time to first token s, decode tokens/s after it) of one greedy generate() of exactly new_tokens."""
    import torch

    input_ids = torch.tensor([ids], device=model.device)
    clock = _TokenClock()
    began = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, pad_token_id=PAD, streamer=clock, **kwargs)
    times = clock.times
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")
    return times[0] - began, rate


def decode_variants(model: Any, ids: list[int], *, device: str, new_tokens: int, repeats: int,
                    warm: int) -> dict[str, Any]:
    """Batch-1 decode tokens/s and TTFT: dynamic cache (today's engine), static cache, static cache compiled."""
    variants: dict[str, dict[str, Any]] = {
        "dynamic": {"disable_compile": True},
        "static": {"cache_implementation": "static", "disable_compile": True},
        "static+compile": {"cache_implementation": "static"},
    }
    results: dict[str, Any] = {}
    for name, kwargs in variants.items():
        if name == "static+compile" and not device.startswith("cuda"):
            results[name] = {"skipped": "transformers compiles the decode step on CUDA only"}
            continue
        try:
            began = time.perf_counter()
            for _ in range(warm):  # the compiled variant compiles and captures its graphs here
                timed_generate(model, ids, new_tokens, **kwargs)
            warm_s = time.perf_counter() - began
            runs = [timed_generate(model, ids, new_tokens, **kwargs) for _ in range(repeats)]
        except Exception as exc:  # a variant this mode cannot run (e.g. compiling bitsandbytes) is recorded
            results[name] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
            continue
        ttfts = [ttft * 1000 for ttft, _ in runs]
        rates = [rate for _, rate in runs]
        results[name] = {"tokens_per_s": round(statistics.median(rates), 1),
                         "ms_per_token": round(1000 / statistics.median(rates), 3),
                         "ttft_ms_p50": round(percentile(ttfts, 50), 2), "ttft_ms_max": round(max(ttfts), 2),
                         "runs": repeats, "warmup_s": round(warm_s, 1)}
    return results


# -- a prompt of a given length, and the server's engine path --------------------------------------------------------

def prompt_text(words: int, salt: str) -> str:
    return " ".join(f"{salt}{i}" for i in range(words))


def request_of(engine: Any, prompt_tokens: int, salt: str) -> TranslationRequest:
    """A request whose prompt (template included) is prompt_tokens tokens long with this tokenizer."""
    words = prompt_tokens
    while words > 1:
        text = prompt_text(words, salt)
        if engine.prompt_tokens(ChatPrompt.user(build_prompt(text, "en", "fr"))) <= prompt_tokens:
            break
        words -= 1
    return TranslationRequest(text=prompt_text(words, salt), source="en", target="fr")


async def first_delta_ms(engine: Engine, request: TranslationRequest, repeats: int) -> list[float]:
    """From engine.generate() to its first text delta (thread hop, streamer and incremental decoder included);
    a run whose random tokens decode to no text at all is left out."""
    prompt = ChatPrompt.user(build_prompt(request.text, request.source, request.target))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        generation = engine.generate(prompt, GenerationOptions(max_new_tokens=16))
        async for _ in generation:
            times.append((time.perf_counter() - began) * 1000)
            generation.cancel()
            break
        await generation.wait_closed()
    return times


async def streams_through_translator(engine: Engine, streams: int, *, new_tokens: int,
                                     prompt_tokens: int) -> dict[str, Any]:
    """Start `streams` translations at once through the Translator; aggregate tokens/s until the last is done."""
    settings = Settings().replace({
        "scheduler.max_concurrent": streams, "scheduler.max_queue": streams, "cache.enabled": False,
        "generation.max_new_tokens": new_tokens, "generation.workers": streams, "scheduler.max_per_client": 0,
    })
    translator = build_translator(settings, engine)
    requests = [request_of(engine, prompt_tokens, f"s{n}x") for n in range(streams)]
    try:
        began = time.perf_counter()
        sessions = await asyncio.gather(*(translator.translate(request) for request in requests))
        elapsed = time.perf_counter() - began
    finally:
        await translator.close()
    dones = [session.log[-1] for session in sessions]
    failed = [done.data.get("message", done.type) for done in dones if done.type != "done"]
    tokens = sum(int(done.data.get("tokens", 0)) for done in dones if done.type == "done")
    ttfts = [float(done.data["ttft_ms"]) for done in dones if done.type == "done"]
    return {"streams": streams, "tokens": tokens, "seconds": round(elapsed, 3),
            "tokens_per_s": round(tokens / elapsed, 1), "tokens_per_stream": round(tokens / streams, 1),
            "ttft_ms_p50": round(percentile(ttfts, 50), 1), "ttft_ms_p99": round(percentile(ttfts, 99), 1),
            **({"failed": failed[:3]} if failed else {})}


# -- the run ----------------------------------------------------------------------------------------------------------

def _error(exc: BaseException) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"}


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    began = time.perf_counter()
    print(f"  {name} ...", file=sys.stderr, flush=True)
    yield
    print(f"  {name}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)


async def bench_mode(mode: str, args: argparse.Namespace, config: Any, tokenizer: Any,
                     bandwidth: float) -> dict[str, Any]:
    import torch

    from hmt_stream.engine.batched import BatchedEngine
    from hmt_stream.engine.transformers import TransformersEngine

    out: dict[str, Any] = {}
    with _step(f"{mode}: build"):
        began = time.perf_counter()
        model = build_model(config, args.device, mode)
        out["build_s"] = round(time.perf_counter() - began, 1)
    out["weight_bytes"] = weight_bytes(model)
    out["bound_tokens_per_s"] = round(bandwidth / out["weight_bytes"], 1)
    engine = TransformersEngine(model, tokenizer, model_id="random-weights", demo=True, workers=1)
    request = request_of(engine, args.prompt_tokens, "p")
    ids = list(engine.prompt_ids(ChatPrompt.user(build_prompt(request.text, request.source, request.target))))
    out["prompt_tokens"] = len(ids)
    with _step(f"{mode}: batch-1 decode"):
        out["decode"] = decode_variants(model, ids, device=args.device, new_tokens=args.new_tokens,
                                        repeats=args.repeats, warm=args.warm)
    best = max((v.get("tokens_per_s", 0.0) for v in out["decode"].values()), default=0.0)
    out["best_fraction_of_bound"] = round(best / out["bound_tokens_per_s"], 3)
    with _step(f"{mode}: first delta through TransformersEngine"):
        try:
            times = await first_delta_ms(engine, request, args.repeats)
            out["engine_first_delta_ms_p50"] = round(percentile(times, 50), 2)
        except Exception as exc:
            out["engine_first_delta_ms_p50"] = _error(exc)
    await engine.close()

    streams: dict[str, dict[str, Any]] = {"threads": {}, "batched": {}}
    for count in args.streams:
        with _step(f"{mode}: {count} streams, TransformersEngine"):
            threaded = TransformersEngine(model, tokenizer, model_id="random-weights", demo=True, workers=count)
            try:
                streams["threads"][str(count)] = await streams_through_translator(
                    threaded, count, new_tokens=args.new_tokens, prompt_tokens=args.prompt_tokens)
            except Exception as exc:
                streams["threads"][str(count)] = _error(exc)
            await threaded.close()
    for count in args.streams:
        with _step(f"{mode}: {count} streams, BatchedEngine"):
            batched = BatchedEngine(model, tokenizer, model_id="random-weights", demo=True, max_batch=count)
            try:
                streams["batched"][str(count)] = await streams_through_translator(
                    batched, count, new_tokens=args.new_tokens, prompt_tokens=args.prompt_tokens)
            except Exception as exc:
                streams["batched"][str(count)] = _error(exc)
            finally:
                await batched.close()
    out["streams"] = streams
    del model, engine
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    # bitsandbytes computes 8-bit matmuls from fp16 and says so (a warning, or a log line) on every call.
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if args.tiny:
        torch.set_num_threads(1)  # a tiny model gains nothing from more, and the machine may be shared

    torch.manual_seed(0)
    config = model_config(args.tiny)
    tokenizer = build_tokenizer(config.vocab_size)
    bandwidth = copy_bandwidth(args.device, 64 if args.tiny else 2048)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "tiny": args.tiny, "machine": machine(args.device),
        "shape": TINY_SHAPE if args.tiny else FULL_SHAPE, "targets": TARGETS,
        "settings": {"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "repeats": args.repeats,
                     "streams": args.streams},
        "copy_bandwidth_GBps": round(bandwidth / 1e9, 1), "modes": {},
    }
    for mode in args.modes:
        try:
            result["modes"][mode] = await bench_mode(mode, args, config, tokenizer, bandwidth)
        except Exception as exc:  # e.g. bitsandbytes missing or out of memory: record it, go on
            result["modes"][mode] = _error(exc)
    return result


def finite(node: Any) -> Any:
    """The figures with NaN (nothing to measure) as None, so that the JSON is strict."""
    if isinstance(node, dict):
        return {key: finite(value) for key, value in node.items()}
    if isinstance(node, list):
        return [finite(value) for value in node]
    if isinstance(node, float) and math.isnan(node):
        return None
    return node


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny config on CPU (a smoke test of this script)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--modes", default="bf16,int8", help="comma-separated: bf16, int8")
    parser.add_argument("--streams", default=None, help="concurrent streams, comma-separated (default 8,32,64)")
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per generation (default 128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5)")
    parser.add_argument("--warm", type=int, default=None, help="untimed runs first (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures as JSON")
    parser.add_argument("--write", action="store_true",
                        help="also file the figures into docs/benchmarks.json and docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    args.modes = [mode for mode in args.modes.split(",") if mode]
    unknown = set(args.modes) - {"bf16", "int8"}
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    tiny = args.tiny
    args.streams = [int(n) for n in (args.streams or ("3" if tiny else "8,32,64")).split(",")]
    args.new_tokens = args.new_tokens or (8 if tiny else 128)
    args.repeats = args.repeats or (2 if tiny else 5)
    args.warm = args.warm if args.warm is not None else (1 if tiny else 2)
    if tiny:
        args.prompt_tokens = min(args.prompt_tokens, 40)
    return args


def main(argv: list[str] | None = None, *, out: Callable[[str], object] = print) -> dict[str, Any]:
    args = parse_args(argv)
    result: dict[str, Any] = finite(asyncio.run(run(args)))
    text = json.dumps(result, indent=2, allow_nan=False)
    if args.json:
        args.json.write_text(text + "\n")
    if args.write:
        from .report import file_gpu_results

        file_gpu_results(result)
    out(text)
    return result


if __name__ == "__main__":
    main()
