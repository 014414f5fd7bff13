"""A page of another site calls the LibreTranslate-compatible API from Chromium, as LibreTranslate's browser
clients do: a site in auth.allowed_origins reads the answers (CORS), any other is stopped by the browser."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser

from .conftest import Serve

pytestmark = pytest.mark.slow

FETCH = """async (url) => {
  try {
    const response = await fetch(url + "/translate", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({q: ["Good morning.", "Der Hase lachte laut."], source: "auto", target: "fr"})});
    return {status: response.status, body: await response.json()};
  } catch (error) {
    return {failed: String(error)};
  }
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>a LibreTranslate client</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sites() -> Iterator[list[str]]:
    """Two other sites on loopback (other ports: other origins) that serve a blank page."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def call_from(browser: Browser, origin: str, server_url: str) -> Any:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{origin}/")
        return page.evaluate(FETCH, server_url)
    finally:
        context.close()


def test_an_allowed_site_reads_translations_and_another_is_stopped(browser: Browser, serve: Serve,
                                                                   sites: list[str]) -> None:
    app, other = sites
    server = serve(auth__allowed_origins=(app,))
    allowed = call_from(browser, app, server.url)
    assert allowed.get("status") == 200, allowed
    assert len(allowed["body"]["translatedText"]) == 2
    assert [d["language"] for d in allowed["body"]["detectedLanguage"]] == ["en", "de"]
    refused = call_from(browser, other, server.url)
    assert refused == {"failed": "TypeError: Failed to fetch"}
