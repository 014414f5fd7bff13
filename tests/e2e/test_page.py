"""The translation page in a real chromium against the real app (demo model): the form, output and tools."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page

from .conftest import LONG, Pages, Serve
from .helpers import fill_form, output, session_id, status, text, translate, transport, wait_finished, wait_output

pytestmark = pytest.mark.slow

TEXT = "Hello, world. How are you today?"


def test_translate_over_websocket_history_copy_and_share(serve: Serve, pages: Pages, shot) -> None:
    server = serve()
    page = pages.open(server.url)
    assert transport(page) == "websocket"
    assert page.is_visible("#demo-banner")
    assert "not a translation" in text(page, "#demo-banner")
    assert len(page.locator("#target option").all()) == 38
    assert page.locator("#source option").first.get_attribute("value") == "auto"
    assert "英语" in (page.locator("#target option[value='en']").text_content() or "")
    shot(page, "idle")

    translate(page, TEXT, "en", "fr")
    assert wait_finished(page) == "done"
    shot(page, "done")
    shot(page, "demo-banner")
    session = server.get_json(f"/api/sessions/{session_id(page)}")
    assert session["state"] == "done"
    assert output(page) == session["text"] != ""
    assert page.evaluate("window.hmt.translation.result.text") == session["text"]
    assert page.evaluate("window.hmt.translation.transport") == "websocket"
    assert page.get_attribute("#output", "lang") == "fr"
    assert text(page, "#status-text").startswith("Done in ")

    # History: the newest entry, in localStorage and on the page.
    history = json.loads(page.evaluate("localStorage.getItem('hmt-stream.history')"))
    assert history[0] | {"at": 0} == {"text": TEXT, "source": "en", "target": "fr", "translation": session["text"],
                                      "at": 0}
    assert page.locator("#history li").count() == 1
    assert TEXT in text(page, "#history li")

    # Copy puts the output on the clipboard.
    page.click("#copy")
    page.wait_for_function("() => document.getElementById('copy').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == session["text"]

    # Read aloud speaks the output in the target language (speechSynthesis itself is stubbed: no audio here).
    page.evaluate("""() => { window.__spoken = [];
        speechSynthesis.speak = (u) => window.__spoken.push({text: u.text, lang: u.lang}); }""")
    page.click("#speak")
    assert page.evaluate("window.__spoken") == [{"text": session["text"], "lang": "fr"}]

    # The shareable URL is in the address bar and restores the form in a fresh tab.
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"source": ["en"], "target": ["fr"], "q": [TEXT]}
    shared = pages.open(page.url)
    assert shared.input_value("#source") == "en"
    assert shared.input_value("#target") == "fr"
    assert shared.input_value("#input") == TEXT
    page.click("#share")
    page.wait_for_function("() => document.getElementById('share').textContent === 'Link copied'")
    assert page.evaluate("navigator.clipboard.readText()") == page.url

    # Ctrl+Enter translates again: the same request now comes from the phrase cache.
    page.focus("#input")
    page.keyboard.press("Control+Enter")
    assert wait_finished(page) == "done"
    assert "(cached)" in text(page, "#status-text")
    assert output(page) == session["text"]
    assert page.locator("#history li").count() == 1  # the same request once

    # A history entry restores form and output; clear all empties it.
    fill_form(page, "something else", "de", "ja")
    page.click("#history li button")
    assert page.input_value("#input") == TEXT
    assert (page.input_value("#source"), page.input_value("#target")) == ("en", "fr")
    assert output(page) == session["text"]
    page.click("#clear-history")
    assert page.locator("#history li").count() == 0
    assert json.loads(page.evaluate("localStorage.getItem('hmt-stream.history')")) == []
    assert pages.errors == []


def test_swap_counter_and_keyboard(serve: Serve, pages: Pages) -> None:
    server = serve(generation__max_chars=50)
    page = pages.open(server.url)
    assert text(page, "#counter") == "0 / 50"
    fill_form(page, "x" * 51, "de", "ja")
    assert text(page, "#counter") == "51 / 50"
    assert page.get_attribute("#input", "aria-invalid") == "true"
    assert page.is_disabled("#translate")
    page.fill("#input", "😀" * 50)  # code points, as the server counts them
    assert text(page, "#counter") == "50 / 50"
    assert page.is_enabled("#translate")

    page.click("#swap")
    assert (page.input_value("#source"), page.input_value("#target")) == ("ja", "de")
    page.select_option("#source", "auto")
    page.click("#swap")
    assert (page.input_value("#source"), page.input_value("#target")) == ("de", "ja")

    # Every control has an accessible name, and Tab reaches each enabled one.
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button, select, textarea, [tabindex]')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
        .map(el => el.id || el.outerHTML)""")
    assert unnamed == []
    page.focus("#source")
    reached = set()
    for _ in range(20):
        reached.add(page.evaluate("document.activeElement.id"))
        page.keyboard.press("Tab")
    assert {"source", "swap", "target", "input", "output", "share", "translate"} <= reached
    assert pages.errors == []


def test_stop_cancels_on_the_server(serve: Serve, pages: Pages, shot) -> None:
    # 4,000 tokens (as long as the demo model's 4,096 positions allow): the translation must outlast a screenshot,
    # a second tab and its wait in line; with 2,000, a clean-clone run once saw it end `done` before Stop.
    server = serve(**{**LONG, "generation__max_new_tokens": 4000, "scheduler__max_concurrent": 1})
    page = pages.open(server.url)
    translate(page, "Please keep talking for a long while.", "en", "de")
    wait_output(page, 40)
    assert status(page) == "running"
    shot(page, "streaming")
    # One generation at a time (scheduler.max_concurrent = 1): a second tab waits its turn, and says so.
    other = pages.open(server.url)
    translate(other, "Me next, please.", "en", "es")
    other.wait_for_function("() => document.getElementById('status-text').textContent === 'Queued #1'")
    assert status(other) == "queued"
    page.click("#stop")
    assert wait_finished(page) == "cancelled"
    assert text(page, "#status-text") == "Stopped"
    session = server.get_json(f"/api/sessions/{session_id(page)}")
    assert session["state"] == "cancelled"
    stopped = output(page)
    assert stopped == session["text"]
    time.sleep(1.5)  # nothing more may arrive
    assert output(page) == stopped
    assert server.get_json(f"/api/sessions/{session_id(page)}")["text"] == stopped
    assert page.is_disabled("#stop")
    # The slot is free: the second tab starts, and stops too.
    wait_output(other, 1)
    other.click("#stop")
    assert wait_finished(other) == "cancelled"
    assert pages.errors == []


def test_error_is_shown(serve: Serve, pages: Pages, shot) -> None:
    # Every prompt is longer than 16 tokens: the server refuses it with too_long.
    server = serve(generation__max_input_tokens=16)
    page = pages.open(server.url)
    translate(page, "This prompt is too long for the server's token limit.", "en", "fr")
    assert wait_finished(page) == "error"
    assert "limit is 16" in text(page, "#status-text")
    assert output(page) == ""
    shot(page, "error")
    assert page.is_enabled("#translate")


def test_narrow_screen_and_dark_mode(serve: Serve, pages: Pages, shot) -> None:
    server = serve()
    page = pages.open(server.url, width=375, height=760, color_scheme="dark")
    translate(page, "Phones are small.", "en", "zh")
    assert wait_finished(page) == "done"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    for control in ("#source", "#target", "#input", "#translate", "#stop", "#copy", "#output"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, control
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 22)"  # the dark palette
    shot(page, "narrow-dark")
    page.emulate_media(color_scheme="light")
    shot(page, "narrow")


def test_sign_in_with_an_api_key_when_auth_is_on(serve: Serve, pages: Pages, shot) -> None:
    server = serve(auth__enabled=True, auth__api_keys=("e2e-key-0123456789",))
    page = pages.open(server.url)
    assert page.is_visible("#signin")
    assert transport(page) == ""
    assert status(page) == "error"
    shot(page, "sign-in")

    page.fill("#api-key", "wrong-key")
    page.click("#signin button[type=submit]")
    page.wait_for_function("() => document.getElementById('status-text').textContent.startsWith('Sign-in failed')")
    assert page.is_visible("#signin")

    page.fill("#api-key", "e2e-key-0123456789")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin", state="hidden")
    page.wait_for_function("() => document.getElementById('transport').dataset.transport === 'websocket'")
    assert page.input_value("#api-key") == ""
    translate(page, "Only for members.", "en", "fr")
    assert wait_finished(page) == "done"
    assert output(page) != ""

    # The token is a cookie: a reload is still signed in, and the key was never stored by the page.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert not page.is_visible("#signin")
    assert transport(page) == "websocket"
    stored = page.evaluate("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert "e2e-key-0123456789" not in stored
    assert pages.errors == []


def test_cmd_enter_escape_and_the_20_entry_history(serve: Serve, pages: Pages) -> None:
    server = serve()
    old = [{"text": f"old {i}", "source": "en", "target": "de", "translation": f"alt {i}", "at": 1000 - i}
           for i in range(20)]  # newest first, as the page keeps them: "old 19" is the oldest

    def seed(page: Page) -> None:
        page.add_init_script(f"localStorage.setItem('hmt-stream.history', {json.dumps(json.dumps(old))})")

    page = pages.open(server.url, setup=seed)
    assert page.locator("#history li").count() == 20

    # Cmd+Enter (macOS) translates, like Ctrl+Enter; the new entry pushes the oldest out of the 20.
    fill_form(page, TEXT, "en", "fr")
    page.focus("#input")
    page.keyboard.press("Meta+Enter")
    assert wait_finished(page) == "done"
    history = json.loads(page.evaluate("localStorage.getItem('hmt-stream.history')"))
    assert [item["text"] for item in history] == [TEXT] + [f"old {i}" for i in range(19)]
    assert page.locator("#history li").count() == 20

    # Escape stops a running translation, on the server too.
    long = serve(**{**LONG, "generation__max_new_tokens": 2000})
    page = pages.open(long.url)
    translate(page, "Please keep talking for a long while.", "en", "de")
    wait_output(page, 40)
    page.focus("#input")
    page.keyboard.press("Escape")
    assert wait_finished(page) == "cancelled"
    assert long.get_json(f"/api/sessions/{session_id(page)}")["state"] == "cancelled"
    assert pages.errors == []
