"""The Hunyuan-MT prompt templates, exactly as the model card gives them."""

from __future__ import annotations

import unicodedata

from .languages import AUTO, CHINESE, LANGUAGES

ZH_TEMPLATE = "把下面的文本翻译成{target}，不要额外解释。\n\n{text}"
XX_TEMPLATE = "Translate the following segment into {target}, without additional explanation.\n\n{text}"


def is_mostly_han(text: str) -> bool:
    """True when more than half of the letters in text are Han ideographs."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return False
    han = sum(1 for ch in letters if unicodedata.name(ch, "").startswith("CJK"))
    return han * 2 > len(letters)


def uses_chinese_template(source: str, target: str, text: str) -> bool:
    if target in CHINESE or source in CHINESE:
        return True
    return source == AUTO and is_mostly_han(text)


def build_prompt(text: str, source: str, target: str) -> str:
    """The user message for one translation (the chat template is applied by the engine)."""
    language = LANGUAGES[target]
    if uses_chinese_template(source, target, text):
        return ZH_TEMPLATE.format(target=language.zh_name, text=text)
    return XX_TEMPLATE.format(target=language.name, text=text)
