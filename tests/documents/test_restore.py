"""The model's output back into document text, however the deltas fall."""

from __future__ import annotations

import pytest

from hmt_stream.documents import Restorer, Segment, Span

LINK = Segment("Read <s1>the story</s1> and <s2></s2> now.",
               (Span('<a href="/x">', "</a>"), Span("<code>x &lt; 1</code>", "")))


def restore(segment: Segment, deltas: list[str], escape: bool = False) -> str:
    restorer = Restorer(segment, escape=escape)
    return "".join(restorer.feed(delta) for delta in deltas) + restorer.finish()


def every_split(text: str) -> list[list[str]]:
    return [[text[:i], text[i:j], text[j:]] for i in range(len(text)) for j in range(i, len(text), 3)]


def test_placeholders_become_markup_wherever_the_deltas_split() -> None:
    output = "<target>Lisez <s1>l'histoire</s1> et <s2></s2> maintenant.</target>"
    expected = 'Lisez <a href="/x">l\'histoire</a> et <code>x &lt; 1</code> maintenant.'
    for deltas in every_split(output):
        assert restore(LINK, deltas) == expected, deltas


def test_markup_the_model_dropped_is_put_back_at_the_end() -> None:
    assert restore(LINK, ["Lisez maintenant."]) == ('Lisez maintenant.<a href="/x">the story</a>'
                                                     "<code>x &lt; 1</code>")
    assert restore(LINK, ["<s1>ouvert sans fin"]) == ('<a href="/x">ouvert sans fin</a><code>x &lt; 1</code>')
    assert restore(LINK, ["</s1><s9>x</s9><s1><s1>a</s1></s1><s2></s2>"]) == (
        'x<a href="/x">a</a><code>x &lt; 1</code>')  # an unknown <s9> is dropped, its text kept


def test_outer_spaces_are_trimmed_inner_ones_kept() -> None:
    plain = Segment("Hello world")
    assert restore(plain, ["\n  Bon", "jour ", " le ", "monde  ", "\n"]) == "Bonjour  le monde"
    assert restore(LINK, ["<target> a ", "</target>"]) == 'a<a href="/x">the story</a><code>x &lt; 1</code>'


@pytest.mark.parametrize("escape,expected", [(True, "1 &lt; 2 &amp; <b>x</b>"), (False, "1 < 2 & <b>x</b>")])
def test_html_escapes_the_models_own_text(escape: bool, expected: str) -> None:
    segment = Segment("1 < 2 & <s1>x</s1>", (Span("<b>", "</b>"),))
    assert restore(segment, ["1 < 2 & ", "<s1>x</s1>"], escape=escape) == expected


def test_a_lone_angle_bracket_is_not_held_forever() -> None:
    restorer = Restorer(LINK)
    assert restorer.feed("a < b") == "a < b"
    assert restorer.feed(" <") == ""
    assert restorer.finish() == ' <<a href="/x">the story</a><code>x &lt; 1</code>'
    plain = Restorer(Segment("a"))
    assert plain.feed("a <") == "a <" and plain.finish() == ""
