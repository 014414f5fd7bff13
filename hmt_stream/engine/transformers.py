"""TransformersEngine: Hunyuan-MT (or the demo model) through transformers + torch, generation in a thread pool."""

from __future__ import annotations

import functools
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from ..errors import ModelLoadError
from .base import ChatPrompt, Generation, GenerationOptions, ThreadedGeneration
from .streaming import IncrementalDecoder

log = logging.getLogger(__name__)

_HELP = ("Point model.name (or --model) at a local directory that holds the weights, "
         "or try `make demo` to run the server with the tiny demo model.")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _explain(name: str, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = str(exc).lower()
    if "out of memory" in lowered or "not enough memory" in lowered or isinstance(exc, MemoryError):
        return (f"not enough memory to load {name!r} ({text}). Set load_in_8bit = true in config.toml "
                f"(about 8 GB of GPU memory for the 7B model instead of 15 GB). {_HELP}")
    if isinstance(exc, ImportError):
        return f"a package needed to load {name!r} is missing: {text}. Run `make run` to install the dependencies."
    return f"could not load model {name!r}: {text}. {_HELP}"


def _check_reachable(name: str, revision: str, local_files_only: bool) -> None:
    """Fail in seconds, not after the hub client's minute of retries, when the weights cannot be had."""
    if Path(name).expanduser().is_dir():
        return
    if name.startswith(("/", "./", "../", "~")):
        raise ModelLoadError(f"model directory {name!r} does not exist. {_HELP}")
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision or None), str):
        return  # already in the local hub cache
    if local_files_only:
        raise ModelLoadError(f"model {name!r} is not in the local hub cache and model.local_files_only is set. "
                             f"{_HELP}")
    try:
        model_info(name, revision=revision or None, timeout=10)
    except Exception as exc:  # network errors come from whichever HTTP client huggingface_hub uses
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot fetch model {name!r} from the hub ({reason}) and it is not in the local "
                             f"cache. {_HELP}") from exc


def _quiet_cast_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def load_tokenizer(path: str, *, model_id: str, revision: str = "", local_files_only: bool = False) -> Any:
    """The tokenizer of a hub id or local directory; a failure becomes a ModelLoadError that says what to do."""
    from transformers import AutoTokenizer

    _check_reachable(path, revision, local_files_only)
    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if revision:
        kwargs["revision"] = revision
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(_explain(model_id, exc)) from exc


def encode_prompt(tokenizer: Any, prompt: ChatPrompt) -> tuple[int, ...]:
    """A prompt's token ids through the model's chat template, with the prompt's own template flags."""
    ids = tokenizer.apply_chat_template(prompt.as_dicts(), add_generation_prompt=prompt.add_generation_prompt,
                                        continue_final_message=prompt.continue_final_message,
                                        tokenize=True, return_dict=False)
    return tuple(ids)


class _SeededSampling:
    """Draws each token with the request's own torch.Generator, so that `seed` gives the same text whatever runs in
    the other worker threads (torch's global generator is shared by all of them). generate() runs greedy over
    what this returns: every token but the drawn one is masked out."""

    def __init__(self, options: GenerationOptions, device: Any) -> None:
        import torch
        from transformers import LogitsProcessorList

        from .sampling import warpers

        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(options.seed or 0)
        self._warpers = LogitsProcessorList(warpers(options))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probabilities = torch.softmax(self._warpers(input_ids, scores).float(), dim=-1)
        drawn = torch.multinomial(probabilities, 1, generator=self._generator)
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)


class _StopOnRequest:
    """A stopping criterion that ends generate() at the next decode step once cancel() was called."""

    def __init__(self, generation: ThreadedGeneration) -> None:
        self._generation = generation

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self._generation.stop_requested.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _DeltaStreamer:
    """transformers' streamer hook: receives each new token in the worker thread and emits whole characters."""

    def __init__(self, tokenizer: Any, generation: ThreadedGeneration) -> None:
        self._decoder = IncrementalDecoder(tokenizer)
        self._generation = generation
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        self._generation.tokens += len(ids)
        self._generation.emit(self._decoder.push(ids))

    def end(self) -> None:
        self._generation.emit(self._decoder.flush())


class LocalEngine:
    """What the engines over a local transformers model share: loading, the tokenizer, prompt ids, end tokens."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, demo: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.demo = demo
        self.device = str(getattr(model, "device", "cpu"))
        self._prompt_ids = functools.lru_cache(maxsize=256)(self._encode)
        eos = model.generation_config.eos_token_id
        self._eos = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                            *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})

    @classmethod
    def load(cls, path: str, *, model_id: str, demo: bool, device: str = "auto", dtype: str = "auto",
             load_in_8bit: bool = False, revision: str = "", local_files_only: bool = False,
             **engine: Any) -> Self:
        """Load a hub id or a local directory; any failure becomes a ModelLoadError that says what to do.
        `engine` holds the keyword arguments of this engine class's own constructor (workers, max_batch)."""
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        tokenizer = load_tokenizer(path, model_id=model_id, revision=revision, local_files_only=local_files_only)
        try:
            device = resolve_device(device)
            kwargs: dict[str, Any] = {"local_files_only": local_files_only}
            if revision:
                kwargs["revision"] = revision
            if load_in_8bit:
                # bitsandbytes computes 8-bit matmuls in fp16 on CPU and says so on every call (a warning in some
                # versions, a log line in others).
                warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
                logging.getLogger("bitsandbytes.autograd._functions").addFilter(_quiet_cast_notice)
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
                kwargs["device_map"] = {"": device}
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device), **kwargs)
            if not load_in_8bit:
                model.to(device)  # type: ignore[arg-type]  # transformers types .to() narrowly
            model.eval()
        except (OSError, ValueError, RuntimeError, ImportError, MemoryError, torch.OutOfMemoryError) as exc:
            raise ModelLoadError(_explain(model_id, exc)) from exc
        return cls(model, tokenizer, model_id=model_id, demo=demo, **engine)

    def prompt_ids(self, prompt: ChatPrompt) -> tuple[int, ...]:
        # Cached: the translator counts a prompt's tokens (for the limit) just before generating it.
        return self._prompt_ids(prompt)

    def _encode(self, prompt: ChatPrompt) -> tuple[int, ...]:
        return encode_prompt(self.tokenizer, prompt)

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        return len(self.prompt_ids(prompt))

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else self._eos[0]

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> Generation:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def warmup(self) -> None:
        generation = self.generate(ChatPrompt.user("Hello"), GenerationOptions(max_new_tokens=4))
        async for _ in generation:
            pass


class TransformersEngine(LocalEngine):
    """A thread per generation, each running model.generate() (model.batching = false)."""

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, demo: bool, workers: int = 1) -> None:
        super().__init__(model, tokenizer, model_id=model_id, demo=demo)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hmt-generate")

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> ThreadedGeneration:
        ids = self.prompt_ids(prompt)
        return ThreadedGeneration(self._executor, lambda generation: self._produce(generation, ids, options))

    def _produce(self, generation: ThreadedGeneration, ids: tuple[int, ...], options: GenerationOptions) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        input_ids = torch.tensor([ids], device=self.model.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if options.temperature > 0 and options.seed is not None:
            sampling["logits_processor"] = LogitsProcessorList([_SeededSampling(options, self.model.device)])
        elif options.temperature > 0:
            sampling = {"do_sample": True, "temperature": options.temperature, "top_k": options.top_k,
                        "top_p": options.top_p}
        with torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=options.max_new_tokens,
                repetition_penalty=options.repetition_penalty,
                eos_token_id=self._eos,
                pad_token_id=self.pad_id,
                streamer=_DeltaStreamer(self.tokenizer, generation),
                stopping_criteria=StoppingCriteriaList([_StopOnRequest(generation)]),
                **sampling,
            )

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
