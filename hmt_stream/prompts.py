"""Prompt profiles: the templates of Hunyuan-MT-7B's model card and of Tencent's HY-MT README, word for word."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .languages import AUTO, CHINESE, LANGUAGES

# Hunyuan-MT-7B (model card): ZH<=>XX and XX<=>XX.
ZH_TEMPLATE = "把下面的文本翻译成{target}，不要额外解释。\n\n{text}"
XX_TEMPLATE = "Translate the following segment into {target}, without additional explanation.\n\n{text}"

# HY-MT1.5 (README of Tencent-Hunyuan/HY-MT): ZH<=>XX differs; XX<=>XX is the same sentence.
HY_ZH_TEMPLATE = "将以下文本翻译为{target}，注意只需要输出翻译后的结果，不要额外解释：\n\n{text}"
# Terminology intervention: one "{source_term} 翻译成 {target_term}" line per glossary entry.
TERMINOLOGY_TEMPLATE = ("参考下面的翻译：\n{terms}\n\n"
                        "将以下文本翻译为{target}，注意只需要输出翻译后的结果，不要额外解释：\n{text}")
TERM_LINE = "{source} 翻译成 {target}"
# Contextual translation (the README's block ends with an empty line, kept here).
CONTEXT_TEMPLATE = ("{context}\n"
                    "参考上面的信息，把下面的文本翻译成{target}，注意不需要翻译上文，也不要额外解释：\n{text}\n")
# Formatted translation: the README's example says 中文 where the target language goes.
FORMATTED_TEMPLATE = ("将以下<source></source>之间的文本翻译为{target}，注意只需要输出翻译后的结果，不要额外解释，"
                      "原文中的<sn></sn>标签表示标签内文本包含格式信息，需要在译文中相应的位置尽量保留该标签。"
                      "输出格式为：<target>str</target>\n\n<source>{text}</source>")

Glossary = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Profile:
    """A model family's templates. Only HY-MT1.5 was trained for terminology, context and formats; asked for them,
    Hunyuan-MT-7B gets the same templates (there are no others), and documents give it no automatic context."""

    name: str
    zh_template: str
    automatic_context: bool


HUNYUAN_MT = Profile("hunyuan-mt", ZH_TEMPLATE, automatic_context=False)
HY_MT15 = Profile("hy-mt1.5", HY_ZH_TEMPLATE, automatic_context=True)
PROFILES = {profile.name: profile for profile in (HUNYUAN_MT, HY_MT15)}
AUTO_PROFILE = "auto"


def profile_for(setting: str, model_name: str) -> Profile:
    """`model.prompts`: a profile by name, or "auto": HY-MT1.5's for its models (tencent/HY-MT1.5-7B, -1.8B, FP8 …),
    Hunyuan-MT-7B's for everything else."""
    if setting != AUTO_PROFILE:
        return PROFILES[setting]
    name = model_name.lower().replace("_", "-")
    return HY_MT15 if "hy-mt" in name else HUNYUAN_MT


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


@dataclass(frozen=True)
class Prompt:
    template: str  # basic, terminology, context or formatted
    text: str  # the user message


def glossary_hits(glossary: Glossary, text: str) -> list[tuple[str, str]]:
    """The entries whose source term occurs in text (case-insensitively), each once."""
    folded = text.casefold()
    hits: list[tuple[str, str]] = []
    for source, target in glossary:
        if source.casefold() in folded and (source, target) not in hits:
            hits.append((source, target))
    return hits


def render(profile: Profile, text: str, source: str, target: str, *, glossary: Glossary = (), context: str = "",
           formatted: bool = False) -> Prompt:
    """The user message for one segment. One template per message: formatted (placeholders must survive) with the
    glossary's reference lines before it, else terminology, else context, else the basic one."""
    language = LANGUAGES[target]
    terms = "\n".join(TERM_LINE.format(source=s, target=t) for s, t in glossary)
    if formatted:
        body = FORMATTED_TEMPLATE.format(target=language.zh_name, text=text)
        return Prompt("formatted", f"参考下面的翻译：\n{terms}\n\n{body}" if terms else body)
    if terms:
        return Prompt("terminology", TERMINOLOGY_TEMPLATE.format(terms=terms, target=language.zh_name, text=text))
    if context.strip():
        return Prompt("context", CONTEXT_TEMPLATE.format(context=context, target=language.zh_name, text=text))
    if uses_chinese_template(source, target, text):
        return Prompt("basic", profile.zh_template.format(target=language.zh_name, text=text))
    return Prompt("basic", XX_TEMPLATE.format(target=language.name, text=text))


def build_prompt(text: str, source: str, target: str, profile: Profile = HUNYUAN_MT) -> str:
    """The basic user message for one translation (the chat template is applied by the engine)."""
    return render(profile, text, source, target).text
