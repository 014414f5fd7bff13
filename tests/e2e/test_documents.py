"""Documents on the page in a real chromium against the real app (demo model: the output is not a translation),
under the page's Content-Security-Policy: every test also finds no policy violation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page

from hmt_stream.keys import TRANSLATOR
from hmt_stream.request import TranslationRequest

from ..documents.samples import PROSE
from .conftest import Pages, Serve
from .helpers import csp_violations, output, session_id, text, wait_finished, watch_csp

pytestmark = pytest.mark.slow

FABLE = (f"# The North Wind and the Sun\n\n{PROSE['en']}\n\n- {PROSE['zh']}\n- A second point.\n\n"
         f"```\nnot = 'translated'\n```\n\n{PROSE['ar']}\n\n> {PROSE['hi']}\n")


def drop(page: Page, name: str, content: str, mime: str) -> None:
    """Drop a file on the text box, as a person dragging it from their desktop would."""
    page.evaluate("""([name, content, mime]) => {
        const data = new DataTransfer();
        data.items.add(new File([content], name, {type: mime}));
        const input = document.getElementById('input');
        input.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}));
        input.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", [name, content, mime])


def test_a_dropped_markdown_file_streams_with_progress_and_downloads(serve: Serve, pages: Pages, shot,
                                                                      tmp_path: Path) -> None:
    server = serve(generation__max_new_tokens=12)
    page = pages.open(server.url, setup=watch_csp)
    assert text(page, "#counter") == "0 / 100,000"
    drop(page, "fable.md", FABLE, "text/markdown")
    page.wait_for_function("() => document.getElementById('input').value.length > 100")
    assert page.input_value("#input") == FABLE and page.input_value("#format") == "markdown"
    page.select_option("#source", "en")
    page.select_option("#target", "fr")
    page.evaluate("""() => { window.__bars = [];
        new MutationObserver(() => window.__bars.push(document.getElementById('progress-text').textContent))
            .observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#translate")
    assert wait_finished(page) == "done"
    session = server.get_json(f"/api/sessions/{session_id(page)}")
    result = page.evaluate("window.hmt.translation.result")
    assert output(page) == session["text"] == result["text"]
    assert result["segments"] == 6
    assert page.is_visible("#progress-row") and text(page, "#progress-text") == "6 / 6 segments"
    assert page.evaluate("window.__bars") == [f"{n} / 6 segments" for n in range(7)]
    assert "```\nnot = 'translated'\n```" in output(page) and output(page).startswith("# ")
    shot(page, "document")

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "fable.fr.md"
    saved = tmp_path / "fable.fr.md"
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8") == session["text"]
    assert pages.errors == [] and csp_violations(page) == []


def test_glossary_and_context_are_kept_and_sent(serve: Serve, pages: Pages, shot) -> None:
    server = serve(generation__max_new_tokens=8, transports__websocket=False)  # over POST, not a WS frame
    page = pages.open(server.url, setup=watch_csp)
    page.click("#doc-options summary")
    page.click("#glossary-add")
    page.fill("#glossary li:nth-child(1) input:nth-of-type(1)", "cloak")
    page.fill("#glossary li:nth-child(1) input:nth-of-type(2)", "manteau")
    page.click("#glossary-add")
    page.fill("#glossary li:nth-child(2) input:nth-of-type(1)", "half a term")
    page.fill("#context", "A fable by Aesop.")
    shot(page, "glossary")
    stored = json.loads(page.evaluate("localStorage.getItem('hmt-stream.glossary')"))
    assert stored == [{"source": "cloak", "target": "manteau"}, {"source": "half a term", "target": ""}]

    page.select_option("#source", "en")
    page.select_option("#target", "fr")
    page.fill("#input", "The traveller held his cloak tight.")
    page.click("#translate")
    assert wait_finished(page) == "done"
    sent = server.app[TRANSLATOR].find(session_id(page)).request  # type: ignore[union-attr]
    assert isinstance(sent, TranslationRequest)
    assert sent.glossary == (("cloak", "manteau"),) and sent.context == "A fable by Aesop."

    assert csp_violations(page) == []  # (the reload starts a new list)
    # A reload keeps the glossary (this browser only); a removed row is gone for good.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#glossary li").count() == 2
    page.click("#doc-options summary")
    page.click("#glossary li:nth-child(2) button")
    assert json.loads(page.evaluate("localStorage.getItem('hmt-stream.glossary')")) == stored[:1]
    assert pages.errors == [] and csp_violations(page) == []


def test_auto_source_shows_the_detected_language(serve: Serve, pages: Pages, shot) -> None:
    server = serve(generation__max_new_tokens=8)
    page = pages.open(server.url, setup=watch_csp)
    page.select_option("#source", "auto")
    page.select_option("#target", "zh")
    page.fill("#input", "Le vent du nord et le soleil se disputaient pour savoir lequel était le plus fort.")
    page.click("#translate")
    assert wait_finished(page) == "done"
    assert text(page, "#detected") == "Detected: French" and page.is_visible("#detected")
    assert page.is_hidden("#progress-row")  # one segment: no bar
    shot(page, "detected")
    assert pages.errors == [] and csp_violations(page) == []
