"""LibreTranslate's language codes and ours."""

from __future__ import annotations

import pytest

from hmt_stream.languages import LANGUAGES
from hmt_stream.transports import libre_codes


@pytest.mark.parametrize(("theirs", "ours"), [
    ("zh", "zh"), ("zh-Hans", "zh"), ("ZH-HANS", "zh"), ("zt", "zh-Hant"), ("zh-Hant", "zh-Hant"),
    ("zh-hant", "zh-Hant"), ("pb", "pt"), ("pt-BR", "pt"), ("pt", "pt"), ("EN", "en"), ("fil", "tl"),
    ("iw", "he"), ("auto", "auto"), ("Auto", "auto"), ("yue", "yue"),
])
def test_their_codes_map_to_ours(theirs: str, ours: str) -> None:
    assert libre_codes.to_ours(theirs) == ours


@pytest.mark.parametrize("unknown", ["zz", "sv", "", "zh-", "pt-PT-x"])
def test_codes_we_do_not_translate_are_unknown(unknown: str) -> None:
    assert libre_codes.to_ours(unknown) is None


def test_languages_shows_the_codes_their_clients_expect_and_every_other_as_a_target() -> None:
    listed = libre_codes.languages()
    codes = [entry["code"] for entry in listed]
    assert len(codes) == len(LANGUAGES) == len(set(codes))
    assert "zh-Hans" in codes and "zh-Hant" in codes and "zh" not in codes and "zt" not in codes
    for entry in listed:
        assert entry["targets"] == [code for code in codes if code != entry["code"]]
        assert libre_codes.to_ours(str(entry["code"])) in LANGUAGES  # each shown code maps back
    assert {"code": "zh-Hans", "name": "Chinese"}.items() <= listed[0].items()
    assert [libre_codes.to_libre(code) for code in ("zh", "zh-Hant", "en")] == ["zh-Hans", "zh-Hant", "en"]
