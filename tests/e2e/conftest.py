"""Browser fixtures: the real app on loopback (the real engine, demo model) and Debian's chromium."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from hmt_stream.app import create_app
from hmt_stream.engine.transformers import LocalEngine
from tests.conftest import make_settings

from .server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Screenshots of the page's states; HMT_E2E_SCREENSHOTS moves them elsewhere. The folder is gitignored.
SCREENSHOTS = Path(os.environ.get("HMT_E2E_SCREENSHOTS", Path(__file__).parent / "screenshots"))


# Per module, not per session: while Playwright's sync API is open it holds the main thread's running event loop,
# and the async tests that follow in the same run could not start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make test-deps` (as root it installs it) or "
                    "`sudo apt-get install chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


Serve = Callable[..., LiveServer]

# For tests that need a long stream: with greedy decoding the demo model (random weights; its output is not a
# translation) writes the same text on every run and no randomly drawn end-of-text token cuts it short. It stays
# silent for its first ~190 tokens, then writes about 600 characters in the remaining ~300.
LONG = {"generation__max_new_tokens": 500, "generation__temperature": 0.0}


@pytest.fixture
def serve(demo_dir: Path, engine: LocalEngine) -> Iterator[Serve]:
    """serve(**overrides) starts the app with make_settings overrides (`transports__websocket=False`, …);
    serve(silent_websocket=True) makes /ws accept the upgrade and then say nothing."""
    servers: list[LiveServer] = []

    def start(*, silent_websocket: bool = False, **overrides: Any) -> LiveServer:
        settings = make_settings(demo_dir, **overrides)
        server = LiveServer(create_app(settings, engine=engine), silent_websocket=silent_websocket).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Pages:
    """open(url) gives a page in a fresh browser context (own storage, clipboard allowed) once the app is ready;
    setup(page) runs before the page loads."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self._contexts: list[Any] = []

    def open(self, url: str, *, width: int = 1200, height: int = 900, color_scheme: str = "light",
             setup: Callable[[Page], None] | None = None) -> Page:
        context = self.browser.new_context(viewport={"width": width, "height": height},
                                           permissions=["clipboard-read", "clipboard-write"],
                                           color_scheme=color_scheme)  # type: ignore[arg-type]
        context.set_default_timeout(60_000)
        self._contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        if setup is not None:
            setup(page)  # routes and init scripts, before the page loads
        page.goto(url)
        page.wait_for_selector("body[data-ready='true']")
        return page

    def _console(self, message: ConsoleMessage) -> None:
        # Failed resource loads (a refused WebSocket upgrade, a 204 on EventSource) are how negotiation learns;
        # script errors are what matter.
        if message.type == "error" and "Failed to load resource" not in message.text \
                and "WebSocket connection" not in message.text:
            self.errors.append(message.text)

    def close(self) -> None:
        for context in self._contexts:
            context.close()


@pytest.fixture
def pages(browser: Browser, serve: Serve) -> Iterator[Pages]:
    # Depends on serve so that the pages close before the servers stop.
    pages = Pages(browser)
    yield pages
    pages.close()


@pytest.fixture
def shot() -> Callable[[Page, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take
