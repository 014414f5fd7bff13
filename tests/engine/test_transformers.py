import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from hmt_stream.app import build_translator
from hmt_stream.config import Settings
from hmt_stream.engine import ChatPrompt, GenerationOptions, load_engine
from hmt_stream.engine.transformers import TransformersEngine, resolve_device, resolve_dtype
from hmt_stream.errors import ModelLoadError
from hmt_stream.prompts import build_prompt
from hmt_stream.request import TranslationRequest

from ..conftest import make_settings


def test_the_demo_checkpoint_is_the_real_hunyuan_architecture(threads: TransformersEngine) -> None:
    assert type(threads.model).__name__ == "HunYuanDenseV1ForCausalLM"
    assert threads.demo and threads.device == "cpu"


def test_prompt_goes_through_the_chat_template_without_a_system_prompt(threads: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("你好", "zh", "en"))
    text = threads.tokenizer.decode(threads.prompt_ids(prompt))
    assert text == "<|startoftext|>把下面的文本翻译成英语，不要额外解释。\n\n你好<|extra_0|>"


def test_a_continued_prompt_leaves_the_partial_answer_open(threads: TransformersEngine) -> None:
    asked = ChatPrompt.user(build_prompt("Hello", "en", "fr"))
    continued = asked.continued("Bonjour, le")
    assert not continued.add_generation_prompt and continued.continue_final_message
    text = threads.tokenizer.decode(threads.prompt_ids(continued))
    # The same prompt, then the partial answer with no end-of-turn token after it: the model writes on.
    assert text == threads.tokenizer.decode(threads.prompt_ids(asked)) + "Bonjour, le"
    assert continued.continued(" monde").messages[-1].content == "Bonjour, le monde"
    assert asked.continued("") is asked


def test_cpu_defaults_to_float32() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("float16", "cpu") is torch.float16


def test_cuda_defaults_to_bf16_and_to_fp16_where_bf16_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_dtype("auto", "cuda") is torch.bfloat16 and resolve_dtype("auto", "cuda:1") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_dtype("auto", "cuda") is torch.float16 and resolve_dtype("auto", "cuda:1") is torch.float16
    assert resolve_dtype("bfloat16", "cuda") is torch.bfloat16 and resolve_dtype("float32", "cuda") is torch.float32


def test_auto_device_is_cuda_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cuda:1") == "cuda:1"


async def test_the_configured_sampling_reaches_the_model(demo_dir: Path, threads: TransformersEngine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings, through the translator, are what model.generate() is called with (model card: top_k 20,
    top_p 0.6, temperature 0.7, repetition_penalty 1.05; other values here, so that a default cannot pass)."""
    calls: list[dict[str, Any]] = []
    generate = threads.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(threads.model, "generate", spy)
    sampled = make_settings(demo_dir, generation__temperature=0.33, generation__top_k=7, generation__top_p=0.42,
                            generation__repetition_penalty=1.3, generation__max_new_tokens=9)
    greedy = make_settings(demo_dir, generation__temperature=0.0, generation__repetition_penalty=1.2,
                           generation__max_new_tokens=5)
    for settings in (sampled, greedy):
        translator = build_translator(settings, threads)
        await translator.translate(TranslationRequest("Sampling options", "en", "fr"))
        await translator.close()
    names = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens")
    assert [{name: call[name] for name in names if name in call} for call in calls] == [
        {"do_sample": True, "temperature": 0.33, "top_k": 7, "top_p": 0.42, "repetition_penalty": 1.3,
         "max_new_tokens": 9},
        {"do_sample": False, "repetition_penalty": 1.2, "max_new_tokens": 5},  # temperature 0: greedy
    ]


async def test_generation_streams_text_deltas(threads: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("Hello world", "en", "fr"))
    generation = threads.generate(prompt, GenerationOptions(max_new_tokens=30))
    deltas = [delta async for delta in generation]
    assert deltas and all(deltas)
    assert 1 <= generation.tokens <= 30


async def test_cancel_stops_within_one_decode_step_and_frees_the_worker(threads: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("Hello world", "en", "fr"))
    generation = threads.generate(prompt, GenerationOptions(max_new_tokens=400, temperature=0.0))
    seen = 0
    async for _ in generation:
        seen += 1
        if seen == 5:
            generation.cancel()
            at_cancel = generation.tokens  # read after the request: the step under way may still add its token
    await asyncio.wait_for(generation.wait_closed(), 10)
    assert generation.tokens - at_cancel <= 1, (at_cancel, generation.tokens)
    assert generation.tokens < 400


async def test_8bit_loading_through_bitsandbytes_streams(demo_dir: Path) -> None:
    from bitsandbytes.nn.modules import Linear8bitLt

    engine8 = TransformersEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu", load_in_8bit=True)
    try:
        layer = engine8.model.model.layers[0].mlp.gate_proj
        assert isinstance(layer, Linear8bitLt)
        prompt = ChatPrompt.user(build_prompt("Hello", "en", "de"))
        generation = engine8.generate(prompt, GenerationOptions(max_new_tokens=20))
        text = "".join([delta async for delta in generation])
        assert text and generation.tokens >= 1
    finally:
        await engine8.close()


def test_a_missing_model_fails_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        TransformersEngine.load(str(tmp_path / "nope"), model_id="nope", demo=False, device="cpu",
                                local_files_only=True)
    message = str(caught.value)
    assert f"model directory '{tmp_path / 'nope'}' does not exist" in message
    assert "local directory" in message and "make demo" in message


def test_a_hub_id_not_in_the_cache_fails_at_once_when_offline() -> None:
    with pytest.raises(ModelLoadError) as caught:
        TransformersEngine.load("tencent/Hunyuan-MT-7B", model_id="tencent/Hunyuan-MT-7B", demo=False,
                                device="cpu", local_files_only=True)
    assert "not in the local hub cache" in str(caught.value) and "make demo" in str(caught.value)


@pytest.mark.parametrize("error", ["cuda", "ram"])
def test_running_out_of_memory_while_loading_advises_8bit(demo_dir: Path, error: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        if error == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise MemoryError()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", out_of_memory)
    with pytest.raises(ModelLoadError) as caught:
        TransformersEngine.load(str(demo_dir), model_id="tencent/Hunyuan-MT-7B", demo=False, device="cpu")
    message = str(caught.value)
    assert message.startswith("not enough memory to load 'tencent/Hunyuan-MT-7B'"), message
    assert "load_in_8bit = true" in message and "make demo" in message


async def test_model_revision_picks_that_snapshot_from_the_hub_cache(tmp_path: Path, demo_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, from a hub cache where revision v2 is the demo model and the default branch another (one layer
    fewer): v2 loads the demo model, so the revision reaches both the cache lookup and from_pretrained()."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--hmt-test--demo"
    commits = {"v2": "2" * 40, "main": "1" * 40}
    for ref, commit in commits.items():
        shutil.copytree(demo_dir, repo / "snapshots" / commit)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    config = repo / "snapshots" / commits["main"] / "config.json"
    config.write_text(config.read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 1'))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = Settings().replace({"model.name": "hmt-test/demo", "model.revision": "v2", "model.device": "cpu",
                                   "model.local_files_only": True})
    loaded = load_engine(settings)
    assert loaded.model_id == "hmt-test/demo"
    assert len(loaded.model.model.layers) == 2  # type: ignore[attr-defined]  # whichever local engine it is
    await loaded.close()
    # Without a default branch in the cache: v2 is still found there, and the default is not.
    (repo / "refs" / "main").unlink()
    await load_engine(settings).close()
    with pytest.raises(ModelLoadError, match="not in the local hub cache"):
        load_engine(settings.replace({"model.revision": ""}))
