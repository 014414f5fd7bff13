"""Language detection on a held-out set written for it (tests/documents/heldout.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hmt_stream.documents.detect import detect
from hmt_stream.languages import LANGUAGES

from .heldout import LINGUA, RULES


def test_at_least_95_percent_right_on_the_languages_lingua_knows() -> None:
    assert set(LINGUA) | set(RULES) == set(LANGUAGES)
    wrong = [(language, sentence, detect(sentence)[:1]) for language, sentences in LINGUA.items()
             for sentence in sentences if detect(sentence)[:1] == [] or detect(sentence)[0].language != language]
    total = sum(len(sentences) for sentences in LINGUA.values())
    assert total == 5 * len(LINGUA) == 160
    assert (total - len(wrong)) / total >= 0.95, wrong
    print(f"{total - len(wrong)}/{total} right; wrong: {wrong}")


@pytest.mark.parametrize("language", sorted(RULES))
def test_script_rule_languages_are_always_right(language: str) -> None:
    for sentence in RULES[language]:
        found = detect(sentence)
        assert found and found[0].language == language, (sentence, found)
        assert 0.5 < found[0].confidence <= 1


def test_results_are_ranked_with_confidences() -> None:
    found = detect("Der Hase lachte über die Schildkröte.")
    assert found[0].language == "de"
    assert [d.confidence for d in found] == sorted((d.confidence for d in found), reverse=True)
    assert len(found) <= 5 and all(d.language in LANGUAGES for d in found)
    assert detect("12345 !!!") == []


async def test_the_detect_endpoint(client: Any) -> None:
    response = await client.post("/api/detect", json={"text": "Le lièvre se moquait de la tortue."})
    assert response.status == 200
    found = await response.json()
    assert found[0]["language"] == "fr" and set(found[0]) == {"language", "confidence"}
    bad = await client.post("/api/detect", json={"text": ""})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_request"
