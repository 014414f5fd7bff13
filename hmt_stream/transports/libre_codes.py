"""LibreTranslate's language codes and ours, both ways."""

from __future__ import annotations

from ..languages import AUTO, LANGUAGES

# LibreTranslate 1.9 shows Chinese as zh-Hans / zh-Hant (and Brazilian Portuguese as pt-BR); clients written for
# older releases send the codes of its models: zh, zt, pb. Hunyuan-MT has one Portuguese and calls Filipino tl.
_ALIASES = {"zh-hans": "zh", "zt": "zh-Hant", "pb": "pt", "pt-br": "pt", "fil": "tl", "iw": "he"}
_SHOWN = {"zh": "zh-Hans"}
_OURS = {code.lower(): code for code in LANGUAGES}


def to_ours(code: str) -> str | None:
    """Our code for a LibreTranslate code or "auto" (case does not matter, as in LibreTranslate); None if unknown."""
    lowered = code.strip().lower()
    if lowered == AUTO:
        return AUTO
    return _ALIASES.get(lowered) or _OURS.get(lowered)


def to_libre(code: str) -> str:
    """The code LibreTranslate's clients know for one of ours."""
    return _SHOWN.get(code, code)


def languages() -> list[dict[str, object]]:
    """GET /languages: every language, each a source for every other (one model translates all pairs)."""
    codes = [to_libre(code) for code in LANGUAGES]
    return [{"code": shown, "name": language.name, "targets": [other for other in codes if other != shown]}
            for shown, language in zip(codes, LANGUAGES.values(), strict=True)]
