import asyncio
from pathlib import Path

import pytest

from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.transformers import TransformersEngine, resolve_dtype
from hmt_stream.errors import ModelLoadError
from hmt_stream.prompts import build_prompt


def test_the_demo_checkpoint_is_the_real_hunyuan_architecture(engine: TransformersEngine) -> None:
    assert type(engine.model).__name__ == "HunYuanDenseV1ForCausalLM"
    assert engine.demo and engine.device == "cpu"


def test_prompt_goes_through_the_chat_template_without_a_system_prompt(engine: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("你好", "zh", "en"))
    text = engine.tokenizer.decode(engine.prompt_ids(prompt))
    assert text == "<|startoftext|>把下面的文本翻译成英语，不要额外解释。\n\n你好<|extra_0|>"


def test_a_continued_prompt_leaves_the_partial_answer_open(engine: TransformersEngine) -> None:
    asked = ChatPrompt.user(build_prompt("Hello", "en", "fr"))
    continued = asked.continued("Bonjour, le")
    assert not continued.add_generation_prompt and continued.continue_final_message
    text = engine.tokenizer.decode(engine.prompt_ids(continued))
    # The same prompt, then the partial answer with no end-of-turn token after it: the model writes on.
    assert text == engine.tokenizer.decode(engine.prompt_ids(asked)) + "Bonjour, le"
    assert continued.continued(" monde").messages[-1].content == "Bonjour, le monde"
    assert asked.continued("") is asked


def test_cpu_defaults_to_float32() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("float16", "cpu") is torch.float16


async def test_generation_streams_text_deltas(engine: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("Hello world", "en", "fr"))
    generation = engine.generate(prompt, GenerationOptions(max_new_tokens=30))
    deltas = [delta async for delta in generation]
    assert deltas and all(deltas)
    assert 1 <= generation.tokens <= 30


async def test_cancel_stops_within_two_tokens_and_frees_the_worker(engine: TransformersEngine) -> None:
    prompt = ChatPrompt.user(build_prompt("Hello world", "en", "fr"))
    generation = engine.generate(prompt, GenerationOptions(max_new_tokens=400))
    seen = 0
    async for _ in generation:
        seen += 1
        if seen == 5:
            at_cancel = generation.tokens
            generation.cancel()
    await asyncio.wait_for(generation.wait_closed(), 10)
    assert generation.tokens - at_cancel <= 2, (at_cancel, generation.tokens)


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
