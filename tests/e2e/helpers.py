"""What the tests do with the page, in the page's own terms (ids and data attributes of web/index.html)."""

from __future__ import annotations

from playwright.sync_api import Page

TERMINAL = ("done", "error", "cancelled")


def fill_form(page: Page, text: str, source: str = "en", target: str = "fr") -> None:
    page.select_option("#source", source)
    page.select_option("#target", target)
    page.fill("#input", text)


def translate(page: Page, text: str, source: str = "en", target: str = "fr") -> None:
    fill_form(page, text, source, target)
    page.click("#translate")


def status(page: Page) -> str:
    return page.get_attribute("#status", "data-state") or ""


def wait_finished(page: Page, timeout_ms: int = 150_000) -> str:
    """Wait for done, error or cancelled; returns which."""
    page.wait_for_function("states => states.includes(document.getElementById('status').dataset.state)",
                           arg=list(TERMINAL), timeout=timeout_ms)
    return status(page)


def wait_output(page: Page, length: int, timeout_ms: int = 120_000) -> None:
    page.wait_for_function("n => document.getElementById('output').textContent.length >= n", arg=length,
                           timeout=timeout_ms)


def output(page: Page) -> str:
    return str(page.evaluate("document.getElementById('output').textContent"))


def transport(page: Page) -> str:
    return page.get_attribute("#transport", "data-transport") or ""


def session_id(page: Page) -> str:
    page.wait_for_selector("#output[data-session]", state="attached")
    return page.get_attribute("#output", "data-session") or ""


def record_output_lengths(page: Page) -> None:
    """From now on, note the output's length each time the page changes it (one entry per batch of changes)."""
    page.evaluate("""() => {
        const out = document.getElementById('output');
        window.__lengths = [];
        new MutationObserver(() => window.__lengths.push(out.textContent.length))
            .observe(out, {childList: true, characterData: true, subtree: true});
    }""")


def recorded_lengths(page: Page) -> list[int]:
    return list(page.evaluate("window.__lengths"))


def text(page: Page, selector: str) -> str:
    return page.text_content(selector) or ""


def watch_csp(page: Page) -> None:
    """From the page's first script on, note every Content-Security-Policy violation (pass as Pages.open's setup)."""
    page.add_init_script("""window.__violations = [];
        document.addEventListener('securitypolicyviolation',
            (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));""")


def csp_violations(page: Page) -> list[str]:
    return list(page.evaluate("window.__violations"))
