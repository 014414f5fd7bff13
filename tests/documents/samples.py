"""Documents for the tests, written for them: mixed-script markdown and an HTML page."""

from __future__ import annotations

PROSE = {
    "en": "The north wind and the sun were arguing about which of them was the stronger. A traveller came along, "
          "wrapped in a warm cloak. They agreed that the one who first made him take it off would be the stronger.",
    "zh": "北风和太阳正在争论谁的本领更大。这时，一个穿着暖和斗篷的旅行者走了过来。它们约定，谁先让他脱下斗篷，"
          "谁就更强大。北风使出全身力气猛吹，可是他吹得越猛，旅行者就把斗篷裹得越紧。",
    "ar": "كانت ريح الشمال والشمس تتجادلان حول أيهما أقوى. وفي تلك اللحظة جاء مسافر ملتف بعباءة دافئة. "
          "فاتفقتا على أن من يجعله يخلع عباءته أولاً يكون هو الأقوى.",
    "hi": "उत्तरी हवा और सूरज इस बात पर बहस कर रहे थे कि उनमें से कौन अधिक ताकतवर है। तभी गर्म लबादा ओढ़े एक यात्री "
          "वहाँ आया। उन्होंने तय किया कि जो पहले उसका लबादा उतरवा देगा, वही अधिक ताकतवर माना जाएगा।",
}


def markdown_document(size: int = 20_000) -> str:
    """Headings, nested lists, a code block, links and bare URLs, CJK, Arabic and Hindi paragraphs, repeated."""
    sections: list[str] = []
    number = 0
    while sum(len(section) for section in sections) < size:
        number += 1
        sections.append(
            f"## Part {number}: the wind and the sun\n\n"
            f"{PROSE['en']} See [the fable](https://example.org/fables/{number}?lang=en#north) or "
            f"https://example.com/sun/{number}.\n\n"
            f"- First point of part {number}, with `inline_code({number})` inside.\n"
            f"  - A nested point: the traveller wore a cloak.\n"
            f"    1. Deeper still, number {number}.\n"
            f"- Second point: the sun shone warmly.\n\n"
            f"{PROSE['zh']}\n\n"
            f"```python\ndef wind(strength={number}):\n    return 'cloak stays on'  # not translated\n```\n\n"
            f"{PROSE['ar']}\n\n"
            f"> {PROSE['hi']}\n\n"
            f"| name | role |\n|---|---|\n| Wind | blows hard |\n\n"
        )
    return f"# The North Wind and the Sun\n\n{''.join(sections)}The end.\n"


def html_page(paragraphs: int = 20) -> str:
    body = []
    for number in range(paragraphs):
        body.append(
            f'<section id="s{number}" class="part">\n'
            f'  <h2 title="Part {number}">Part {number} of the fable</h2>\n'
            f'  <p class="lead">{PROSE["en"]} Read <a href="https://example.org/{number}" '
            f'rel="noopener">the whole story</a> and <b>remember</b> it.</p>\n'
            f'  <pre>  keep   this  <b>as is</b> {number}\n  and this line</pre>\n'
            f'  <ul><li>{PROSE["zh"]}</li><li lang="ar">{PROSE["ar"]}</li></ul>\n'
            f"  <p>Code <code>x &lt; {number}</code> stays; so does this image "
            f'<img src="/img/{number}.png" alt="sun"> here.</p>\n'
            f"</section>\n"
        )
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>The North Wind and "
            "the Sun</title>\n<style>p { color: #333; } /* not translated */</style>\n"
            "<script>if (1 < 2) { console.log('not translated'); }</script>\n</head>\n<body>\n"
            + "".join(body) + "</body>\n</html>\n")
