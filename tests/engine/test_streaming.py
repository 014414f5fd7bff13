from pathlib import Path

import pytest
import regex
from transformers import AutoTokenizer

from hmt_stream.engine.streaming import IncrementalDecoder

TEXTS = {
    "chinese": "机器翻译把一种语言的文本转换成另一种语言。",
    "arabic": "مرحبا بالعالم، هذه جملة باللغة العربية.",
    "hindi": "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "emoji": "Family 👨‍👩‍👧 thumbs 👍🏽 flags 🇫🇷🇯🇵 done 🎉",
    "combining": "e\u0301 a\u0300 n\u0303 — Zalgo: Z\u0351\u0334a\u0346\u0358",
}


@pytest.fixture(scope="module")
def tokenizer(demo_dir: Path):
    return AutoTokenizer.from_pretrained(demo_dir)


@pytest.mark.parametrize("name", TEXTS)
def test_one_token_at_a_time_gives_whole_graphemes_and_the_exact_text(tokenizer, name: str) -> None:
    text = TEXTS[name]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text) / 4  # the byte-level BPE really splits these scripts into byte pieces
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push([token]) for token in ids] + [decoder.flush()]
    deltas = [d for d in deltas if d]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    # Each delta is a run of whole grapheme clusters of the final text: no cluster is cut between two deltas.
    boundaries = {0}
    for cluster in regex.finditer(r"\X", text):
        boundaries.add(cluster.end())
    offset = 0
    for delta in deltas:
        offset += len(delta)
        assert offset in boundaries, f"delta {delta!r} ends inside a grapheme cluster"


def test_bytes_that_never_form_a_character_are_dropped_not_shown_as_replacement(tokenizer) -> None:
    # A lone UTF-8 continuation byte, as a random model emits, then ordinary text.
    lone = tokenizer.convert_tokens_to_ids(["\u0122"])  # byte-level alphabet symbol for byte 0x80
    ids = lone + tokenizer.encode("ok then", add_special_tokens=False)
    decoder = IncrementalDecoder(tokenizer)
    out = "".join(decoder.push([t]) for t in ids) + decoder.flush()
    assert out == "ok then"
