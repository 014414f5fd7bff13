"""Splitting documents: every character kept or sent, structure never sent, sentences of many scripts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmt_stream.documents import Segment, estimate_tokens, segments_of, source_of, split
from hmt_stream.documents.segment import sentences

from .samples import html_page, markdown_document


def kept(parts: list[str | Segment]) -> str:
    return "".join(part for part in parts if isinstance(part, str))


@pytest.mark.parametrize("format,text", [("markdown", markdown_document()), ("html", html_page()),
                                         ("text", "One line.\n\nTwo lines here. And more!\n   Indented.\n")])
def test_the_parts_join_back_to_the_document(format: str, text: str) -> None:
    parts = split(text, format)
    assert source_of(parts) == text
    assert all(part.text.strip() == part.text and part.plain.strip() for part in segments_of(parts))


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Z", "S", "Cc")),
                    max_size=300),
       format=st.sampled_from(["text", "markdown", "html"]))
def test_any_input_joins_back(text: str, format: str) -> None:
    assert source_of(split(text, format)) == text


def test_markdown_structure_and_code_are_never_sent() -> None:
    text = markdown_document(3000)
    parts = split(text, "markdown")
    sent = "\n".join(segment.text for segment in segments_of(parts))
    for never in ("```", "def wind", "##", "|---|", "\n- ", "\n> "):
        assert never not in sent
    assert not any(s.text.startswith(("-", ">", "1.", " ", "|")) for s in segments_of(parts))
    assert "inline_code(" not in sent and "https://" not in sent  # inline code and URLs travel as placeholders
    layout = kept(parts)
    assert "```python\ndef wind(strength=1):\n    return 'cloak stays on'  # not translated\n```" in layout
    assert "\n\n- " in layout and "\n  - " in layout and "\n    1. " in layout and "\n\n> " in layout
    link = next(s for s in segments_of(parts) if "<s1>the fable</s1>" in s.text)
    assert link.spans[0].open == "[" and link.spans[0].close == "](https://example.org/fables/1?lang=en#north)"
    assert link.spans[1].open == "https://example.com/sun/1"


def test_markdown_front_matter_html_blocks_and_headings() -> None:
    text = ("---\ntitle: Not translated\n---\n# A heading ##\n\n<div class=\"x\">\nraw html block\n</div>\n\n"
            "Setext heading\n==============\n\nText with <kbd>Ctrl</kbd> and ![an image](a.png).\n")
    parts = split(text, "markdown")
    assert [s.text for s in segments_of(parts)] == ["A heading", "Setext heading",
                                                   "Text with <s1></s1>Ctrl<s2></s2> and <s3></s3>."]
    assert "title: Not translated" in kept(parts) and "raw html block" in kept(parts)


def test_html_tags_attributes_and_verbatim_elements() -> None:
    page = html_page(2)
    parts = split(page, "html")
    sent = "\n".join(segment.text for segment in segments_of(parts))
    for never in ("console.log", "color: #333", "keep   this", "x &lt; 0", "<a ", "class=", "<li", "<p"):
        assert never not in sent
    layout = kept(parts)
    assert "<pre>  keep   this  <b>as is</b> 0\n  and this line</pre>" in layout
    story = next(s for s in segments_of(parts) if "<s1>the whole story</s1>" in s.text)
    assert story.spans[0].open == '<a href="https://example.org/0" rel="noopener">' and story.spans[1].open == "<b>"
    code = next(s for s in segments_of(parts) if s.text.startswith("Code"))
    assert [span.open for span in code.spans] == ["<code>x &lt; 0</code>", '<img src="/img/0.png" alt="sun">']


@pytest.mark.parametrize("language,text,expected", [
    ("zh", "今天天气很好。我们去公园吧！你觉得怎么样？", 3),
    ("ja", "今日は晴れです。公園に行きましょう！", 2),
    ("hi", "आज मौसम अच्छा है। चलो पार्क चलते हैं! आप क्या सोचते हैं?", 3),
    ("th", "วันนี้อากาศดีมาก เราไปสวนสาธารณะกันเถอะ คุณคิดอย่างไร", 3),
    ("ar", "الطقس جميل اليوم. هيا نذهب إلى الحديقة! ما رأيك؟", 3),
    ("bo", "དེ་རིང་གནམ་གཤིས་ཡག་པོ་འདུག། ང་ཚོ་གླིང་ག་ལ་འགྲོ།", 2),
    ("en", "Dr. Smith arrived at 5 p.m. on Monday. He left early.", 2),
])
def test_sentences_of_many_scripts(language: str, text: str, expected: int) -> None:
    found = sentences(text, language)
    assert "".join(found) == text and len(found) == expected


def test_segments_are_packed_up_to_the_budget_and_long_sentences_are_cut() -> None:
    sentence = "The traveller wrapped his cloak tighter around him. "
    parts = split(sentence * 40, "text", max_tokens=40)
    segments = segments_of(parts)
    assert 1 < len(segments) < 40 and all(estimate_tokens(s.text) <= 40 for s in segments)
    long = split("word " * 200, "text", max_tokens=16)
    assert all(estimate_tokens(s.text) <= 16 for s in segments_of(long))
    han = split("风" * 300, "text", max_tokens=50)
    assert all(estimate_tokens(s.text) <= 50 for s in segments_of(han)) and len(segments_of(han)) >= 6


def test_text_without_words_is_kept_not_translated() -> None:
    assert split("12345 — 678", "text") == ["12345 — 678"]
    assert segments_of(split("See https://example.com", "markdown"))[0].text == "See <s1></s1>"
    assert segments_of(split("A <s1>literal</s1> tag", "text"))[0].spans[0].open == "<s1>"
