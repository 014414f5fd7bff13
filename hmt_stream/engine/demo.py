"""Builds the tiny demo checkpoint: real HunYuanDenseV1 architecture, random weights, a trained byte-level BPE."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..languages import LANGUAGES
from ..prompts import XX_TEMPLATE, ZH_TEMPLATE

# Bump when the checkpoint's recipe changes, so a cached build from an older recipe is not reused.
DEMO_VERSION = "1"
DEMO_MARKER = "hmt_demo.json"

SPECIAL_TOKENS = ["<|pad|>", "<|startoftext|>", "<|eos|>", "<|extra_0|>", "<|extra_4|>"]

# The same shape as Hunyuan-MT-7B's template: no system prompt unless given, the user turn ends with
# <|extra_0|>, the assistant turn with <|eos|>.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}<|extra_4|>"
    "{% elif message['role'] == 'user' %}{{ message['content'] }}<|extra_0|>"
    "{% else %}{{ message['content'] }}<|eos|>{% endif %}"
    "{% endfor %}"
)

# A little text in many scripts, so the BPE learns merges for each of them.
_SAMPLES = [
    "The quick brown fox jumps over the lazy dog.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune.",
    "今天天气很好，我们一起去公园散步吧。机器翻译把一种语言的文本转换成另一种语言。",
    "今天天氣很好，我們一起去公園散步吧。",
    "你今日食咗飯未呀？我哋一齊去飲茶啦。",
    "مرحبا بالعالم، هذه جملة باللغة العربية.",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "Привет, мир! Это предложение на русском языке.",
    "こんにちは世界、これは日本語の文です。",
    "안녕하세요 세계, 이것은 한국어 문장입니다.",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Bonjour le monde, ceci est une phrase en français. Où est la gare ?",
    "Hallo Welt, das ist ein Satz auf Deutsch. Grüße aus München.",
    "Hola mundo, esta es una frase en español. ¿Dónde está la estación?",
    "Olá mundo, esta é uma frase em português.",
    "Xin chào thế giới, đây là một câu tiếng Việt.",
    "שלום עולם, זה משפט בעברית.",
    "Emoji 😀🎉👍🏽👨‍👩‍👧 and accents: café naïve résumé e\u0301",
]


def _corpus() -> list[str]:
    lines = list(_SAMPLES)
    for lang in LANGUAGES.values():
        lines.append(ZH_TEMPLATE.format(target=lang.zh_name, text=lang.name))
        lines.append(XX_TEMPLATE.format(target=lang.name, text=lang.zh_name))
    return lines * 4


def _train_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|startoftext|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|extra_0|>", "<|extra_4|>"],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.save_pretrained(out)


def _build_model(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, HunYuanDenseV1Config, HunYuanDenseV1ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(out)
    config = HunYuanDenseV1Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        eod_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = HunYuanDenseV1ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        top_k=20,
        top_p=0.6,
        temperature=0.7,
        repetition_penalty=1.05,
    )
    model.save_pretrained(out)


def build_demo_model(directory: str | os.PathLike[str]) -> Path:
    """Return the demo checkpoint's directory, building it there first unless a build of this recipe exists."""
    target = Path(directory).expanduser()
    marker = target / DEMO_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == DEMO_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a reader never sees a half-written checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=target.parent))
    try:
        _train_tokenizer(staging)
        _build_model(staging)
        (staging / DEMO_MARKER).write_text(json.dumps({"version": DEMO_VERSION, "demo": True}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def is_demo_checkpoint(path: str | os.PathLike[str]) -> bool:
    return (Path(path).expanduser() / DEMO_MARKER).is_file()
