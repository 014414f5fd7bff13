"""Property-based fuzzing of every input the server reads: HTTP bodies, query strings, Last-Event-ID, WS frames.

Properties: no 5xx, every error is `{"error": {"code", "message"}}` with a stable code and its documented status,
a WebSocket answers a malformed frame with one `error` frame and stays open (except an oversized frame or invalid
UTF-8, which must close it with the proper code), every request answers within a bound, and afterwards a normal
translation still works on the same server.

Hypothesis runs in a worker thread; each example is a coroutine run on the test's event loop, where the server
lives (pytest-aiohttp serves the real app on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from hmt_stream import errors
from hmt_stream.config import GenerationSettings
from hmt_stream.keys import SETTINGS, TRANSLATOR
from hmt_stream.languages import AUTO, LANGUAGES
from hmt_stream.request import TranslationRequest
from hmt_stream.session import TranslationSession

from ..transports.conftest import parse_sse
from .conftest import MakeClient

pytestmark = pytest.mark.slow

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
EVENT_TYPES = {"queued", "started", "delta", "progress", "done", "error", "cancelled"}
TERMINAL = {"done", "error", "cancelled"}
# Every request must answer within this, however odd (long-polls are capped far below it in these servers).
BOUND_S = 10.0
# Long-polls in these servers wait at most this long, so an empty answer comes quickly.
POLL = {"transports__poll_timeout_s": 0.1, "transports__poll_timeout_max_s": 0.3}
MAX_CHARS = GenerationSettings().max_chars  # generation.max_chars: the default, which the servers here keep
MAX_LINE = 8190  # aiohttp's longest request line: a longer one is refused by its HTTP parser, not by the app


def _settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


def fuzz(loop: asyncio.AbstractEventLoop, strategy: st.SearchStrategy[Any],
         check: Callable[[Any], Awaitable[str]], max_examples: int) -> Counter[str]:
    """Run `check` on the server's loop for each example that hypothesis draws (call this in a worker thread).

    `check` returns a label for the outcome (a status or an error code); the tally is printed and returned."""
    outcomes: Counter[str] = Counter()

    async def bounded(value: Any) -> str:
        async with asyncio.timeout(BOUND_S):
            return await check(value)

    @_settings(max_examples)
    @given(strategy)
    def run(value: Any) -> None:
        outcomes[asyncio.run_coroutine_threadsafe(bounded(value), loop).result(BOUND_S + 5)] += 1

    started = time.monotonic()
    run()
    print(f"\n{check.__qualname__.split('.')[0]}: {sum(outcomes.values())} examples in "
          f"{time.monotonic() - started:.1f} s: {dict(outcomes.most_common())}")
    return outcomes


# -- what an answer must look like ---------------------------------------------------------------------------

def documented_codes() -> dict[str, int]:
    """The error table of docs/protocol.md: code → HTTP status."""
    section = PROTOCOL.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    return {code: int(status) for code, status in re.findall(r"^\| `(\w+)` \| (\d{3})", section, re.M)}


def check_error(body: Any, status: int | None = None) -> str:
    """`{"error": {"code", "message"}}` with a stable code (and, over HTTP, that code's status); returns the code."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    code, message = error["code"], error["message"]
    assert code in errors.KINDS, f"{code!r} is not one of the stable codes {sorted(errors.KINDS)}"
    assert isinstance(message, str) and message, body
    if status is not None:
        assert status == errors.KINDS[code].http_status, f"{code} came with HTTP {status}: {body}"
    return str(code)


async def answer(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    """Status and decoded JSON body (None when empty); no 5xx, and an error body for every 4xx."""
    raw = await response.read()
    assert response.status < 500, f"HTTP {response.status}: {raw[:500]!r}"
    body = json.loads(raw) if raw else None
    if response.status >= 400:
        assert response.content_type == "application/json", response.content_type
        check_error(body, response.status)
    return response.status, body


def outcome(status: int, body: Any) -> str:
    return str(body["error"]["code"]) if status >= 400 else str(status)


def check_ws_error(message: dict[str, Any]) -> str:
    assert set(message) <= {"type", "code", "message", "ref", "session", "retry_after"}, message
    return check_error({"error": {"code": message.get("code"), "message": message.get("message")}})


def check_event(event: dict[str, Any]) -> None:
    assert isinstance(event.get("session"), str) and event["type"] in EVENT_TYPES, event
    assert isinstance(event["seq"], int) and event["seq"] >= 1, event


async def translation_works(client: TestClient[Any, Any]) -> None:
    """The server still serves an ordinary request after everything the fuzzer threw at it."""
    async with asyncio.timeout(BOUND_S):
        response = await client.post("/api/translate", json={"text": "Good morning", "source": "en", "target": "fr"})
        assert response.status == 200, await response.text()
        assert isinstance((await response.json())["text"], str)


# -- strategies ----------------------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ODD = st.sampled_from(["\u200d", "\u0301", "\ufeff", "\u202e", "\x00", "\x1c", "\u3000", "\U0001f44d\U0001f3fd",
                       "\U0010ffff", "\ufffd", "\r\n"])
ODD_TEXT = st.lists(st.one_of(st.characters(), SURROGATES, ODD), max_size=30).map("".join)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), ODD_TEXT)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
CODES = sorted(LANGUAGES)
TEXTS = st.one_of(
    st.sampled_from(["Hello there", "Good morning", "你好，世界", "Bonjour à tous"]),
    ODD_TEXT,
    st.sampled_from(["", " ", "\n\t", "\u3000", "\x1c\x1d"]),
    st.integers(1, 3).map(lambda k: "a" * (MAX_CHARS + k)),  # just over max_chars
    st.integers(1, 3).map(lambda k: " " * (MAX_CHARS + k)),  # over max_chars and blank
    # Han characters tokenise to about one token each: near max_input_tokens (2048) without reaching max_chars.
    st.integers(1500, 2600).map(lambda n: "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(n))),
    JSON_VALUES,
)
LANGS = st.one_of(st.sampled_from([*CODES, AUTO]), st.sampled_from(["EN", "en-US", "zh_Hant", "xx", " en", ""]),
                  st.text(max_size=6), JSON_VALUES)
NEAR_VALID = st.one_of(
    st.fixed_dictionaries({}, optional={"text": TEXTS, "source": LANGS, "target": LANGS, "ref": JSON_VALUES,
                                        "extra": JSON_VALUES}),
    # Mostly right: one field at a time goes wrong, so that valid requests are common too.
    st.fixed_dictionaries({"text": st.one_of(st.sampled_from(["Hello there", "你好"]), TEXTS),
                           "source": st.one_of(st.sampled_from([*CODES, AUTO]), LANGS),
                           "target": st.one_of(st.sampled_from(CODES), LANGS)}, optional={"extra": JSON_VALUES}))
BODY_URLS = st.sampled_from(["/api/sessions", "/api/translate"])
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/json; charset=latin-1", "application/json; charset=utf-16",
                                 "application/json; charset=bogus", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x"])


def expected_codes(payload: Any) -> set[str]:
    """What the request validator must say about a decoded body: the codes that fit it (empty: it is valid)."""
    if not isinstance(payload, dict):
        return {"bad_request"}
    problems = set()
    text = payload.get("text")
    if isinstance(text, str):
        text = json.loads(json.dumps(text))  # the server's view: JSON joins an escaped surrogate pair into one char
    if not isinstance(text, str) or not text.strip() or has_surrogate(text):
        problems.add("bad_request")  # lone surrogates: JSON can escape them, but they are not text
    if isinstance(text, str) and len(text) > MAX_CHARS:
        problems.add("too_long")
    source, target = payload.get("source", AUTO), payload.get("target")
    if not isinstance(source, str) or not isinstance(target, str):
        problems.add("bad_request")
    if (isinstance(source, str) and source != AUTO and source not in LANGUAGES) or (
            isinstance(target, str) and target not in LANGUAGES):
        problems.add("unsupported_language")
    return problems


def has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)


# -- HTTP bodies ---------------------------------------------------------------------------------------------

async def test_near_valid_bodies_get_the_right_code_or_a_translation(make_client: MakeClient) -> None:
    client = await make_client()

    async def check(example: tuple[str, dict[str, Any]]) -> str:
        url, payload = example
        # ensure_ascii: a lone surrogate travels as a \\udXXX escape, which is valid JSON.
        status, body = await answer(await client.post(url, data=json.dumps(payload),
                                                      headers={"Content-Type": "application/json"}))
        problems = expected_codes(payload)
        if problems:
            assert status >= 400 and body["error"]["code"] in problems, (problems, status, body)
        elif has_surrogate(payload["text"]):
            # Not text a model can read: refusing it is as good as translating it, a 5xx is not.
            assert status in (200, 201) or body["error"]["code"] in ("bad_request", "too_long"), body
        elif status >= 400:
            assert body["error"]["code"] == "too_long", body  # the prompt is over max_input_tokens
        else:
            assert status == (201 if url == "/api/sessions" else 200), body
            assert isinstance(body["session"], str), body
            if url == "/api/translate":
                assert isinstance(body["text"], str) and body["cached"] is False, body
        return outcome(status, body)

    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), st.tuples(BODY_URLS, NEAR_VALID), check, 250)
    await translation_works(client)


async def test_arbitrary_json_values_are_refused_cleanly(make_client: MakeClient) -> None:
    client = await make_client()

    async def check(example: tuple[str, Any]) -> str:
        url, value = example
        status, body = await answer(await client.post(url, data=json.dumps(value),
                                                      headers={"Content-Type": "application/json"}))
        assert status >= 400 and body["error"]["code"] in expected_codes(value), body
        return outcome(status, body)

    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), st.tuples(BODY_URLS, JSON_VALUES), check, 300)
    await translation_works(client)


async def test_arbitrary_bytes_and_content_types_are_refused_cleanly(make_client: MakeClient) -> None:
    client = await make_client()
    prefixes = st.sampled_from([b"", b"{", b'{"text": "Hello", "target": "fr"', b"\xef\xbb\xbf", b"\xff\xfe", b"["])

    async def check(example: tuple[str, bytes, bytes, str | None]) -> str:
        url, prefix, junk, content_type = example
        headers = {"Content-Type": content_type} if content_type else {}
        status, body = await answer(await client.post(url, data=prefix + junk, headers=headers))
        assert status >= 400, body
        return outcome(status, body)

    examples = st.tuples(BODY_URLS, prefixes, st.binary(max_size=200), CONTENT_TYPES)
    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), examples, check, 300)
    await translation_works(client)


@pytest.mark.parametrize("charset", ["bogus", "utf-8x", "x-user-defined-nonsense"])
async def test_unknown_charset_is_a_bad_request_not_a_crash(client: TestClient[Any, Any], charset: str) -> None:
    """Minimal repro: aiohttp's request.text() raises LookupError for an unknown charset (not UnicodeDecodeError)."""
    response = await client.post("/api/sessions", data=b'{"text": "Hello", "target": "fr"}',
                                      headers={"Content-Type": f"application/json; charset={charset}"})
    status, body = await answer(response)
    assert status == 400 and body["error"]["code"] == "bad_request", body


@pytest.mark.parametrize("url", ["/api/sessions", "/api/translate"])
async def test_lone_surrogate_text_is_refused_not_a_crash(client: TestClient[Any, Any], url: str) -> None:
    """Minimal repro: JSON may escape a lone surrogate; the tokenizer raises TypeError on it (was a 500)."""
    response = await client.post(url, data='{"text": "a\\ud800b", "source": "en", "target": "fr"}',
                                      headers={"Content-Type": "application/json"})
    status, body = await answer(response)
    assert status == 400 and body["error"]["code"] == "bad_request", body


async def test_bodies_around_the_size_limit(make_client: MakeClient) -> None:
    client = await make_client()
    limit = client.app[SETTINGS].limits.max_body_bytes if client.app is not None else 65536
    for size in (limit - 100, limit + 1, 4 * limit, 2 * 1024 * 1024):
        body = json.dumps({"text": "a" * max(0, size - 40), "target": "fr"})[:size].ljust(size)
        status, answered = await answer(await client.post("/api/sessions", data=io.BytesIO(body.encode()),
                                                          headers={"Content-Type": "application/json"}))
        assert status >= 400 and answered["error"]["code"] in {"too_large", "too_long", "bad_request"}, answered
        if size > limit:
            assert answered["error"]["code"] == "too_large", answered
    await translation_works(client)


# -- long-poll query strings ---------------------------------------------------------------------------------

NUMBERISH = st.one_of(
    st.sampled_from(["1e400", "-1e400", "inf", "-inf", "nan", "-1", "-0", "0x10", "1_0", "٣", " 3", "3.7",
                     "1e308", "9" * 5000, "", "+", "1e-400", "0.0001"]),
    st.integers().map(str), st.floats().map(str), st.text(max_size=12))
QUERY_RAW = st.text(alphabet=string.ascii_letters + string.digits + "%+-._~!$'()*,;:@/?=&[]", max_size=40)


def idle_session(client: TestClient[Any, Any]) -> TranslationSession:
    """A session that never finishes (no generation behind it): long-polls on it must still answer in time."""
    assert client.app is not None
    session = TranslationSession(TranslationRequest("Hello", AUTO, "fr"))
    client.app[TRANSLATOR].store.add(session)
    session.append("queued", position=1)
    return session


async def finished_session(client: TestClient[Any, Any]) -> str:
    response = await client.post("/api/translate", json={"text": "Hello there", "source": "en", "target": "de"})
    assert response.status == 200, await response.text()
    return str((await response.json())["session"])


def check_page(page: Any, log: list[dict[str, Any]] | None) -> None:
    assert isinstance(page, dict) and set(page) == {"events", "next", "done"}, page
    assert isinstance(page["next"], int) and isinstance(page["done"], bool), page
    events = page["events"]
    for event in events:
        check_event(event)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, seqs
    if log is not None and events:
        assert events == log[seqs[0] - 1:seqs[-1]], (events, log)
        assert page["next"] == seqs[-1], page


async def test_poll_query_strings(make_client: MakeClient) -> None:
    client = await make_client(**POLL)
    done_id = await finished_session(client)
    idle = idle_session(client)
    assert client.app is not None
    store = client.app[TRANSLATOR].store
    done_session = store.get(done_id)
    assert done_session is not None
    logs = {done_id: [e.as_dict() for e in done_session.log], idle.id: [e.as_dict() for e in idle.log]}
    known = st.sampled_from([done_id, idle.id])
    ids = st.one_of(known, known, st.sampled_from(["nope", done_id + "x"]), st.text(max_size=20))

    async def check(example: tuple[str, str | None, str | None]) -> str:
        session_id, after, timeout = example
        query = {k: v for k, v in (("after", after), ("timeout", timeout)) if v is not None}
        url = URL(f"/api/sessions/{quote(session_id, safe='')}/events", encoded=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            url = url.with_query(query)
            response = await client.get(url)
        except ValueError:
            return "unsendable"  # not a URL this client can send (a lone surrogate, say): nothing was sent
        if len(str(url)) > MAX_LINE:
            # aiohttp's HTTP parser refuses the request line (text/plain 400) before the app sees it.
            assert 400 <= response.status < 500, response.status
            return "request line too long"
        status, body = await answer(response)
        assert loop.time() - started < 2.0, "a long-poll waited past poll_timeout_max_s"
        if status == 200:
            check_page(body, logs.get(session_id))
        else:
            assert body["error"]["code"] in {"bad_request", "not_found"}, body
        return outcome(status, body)

    examples = st.tuples(ids, st.none() | NUMBERISH, st.none() | NUMBERISH)
    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), examples, check, 300)

    async def check_raw(example: tuple[str, str]) -> str:
        session_id, raw = example
        status, body = await answer(await client.get(URL(f"/api/sessions/{session_id}/events?{raw}", encoded=True)))
        if status == 200:
            check_page(body, logs.get(session_id))
        else:
            assert body["error"]["code"] in {"bad_request", "not_found"}, body
        return outcome(status, body)

    examples_raw = st.tuples(st.sampled_from([done_id, idle.id]), QUERY_RAW)
    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), examples_raw, check_raw, 200)
    idle.cancel()
    await translation_works(client)


@pytest.mark.parametrize("after", ["1e400", "-1e400", "1e309"])
async def test_poll_after_overflowing_float_is_a_bad_request(make_client: MakeClient, after: str) -> None:
    """Minimal repro: float('1e400') is inf, and int(inf) raises OverflowError (was a 500)."""
    client = await make_client(**POLL)
    session_id = await finished_session(client)
    status, body = await answer(await client.get(f"/api/sessions/{session_id}/events?after={after}&timeout=0"))
    assert status == 400 and body["error"]["code"] == "bad_request", body


# -- SSE Last-Event-ID ---------------------------------------------------------------------------------------

HEADER_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)


async def test_sse_last_event_id_and_after(make_client: MakeClient) -> None:
    client = await make_client(**POLL)
    done_id = await finished_session(client)
    assert client.app is not None
    done_session = client.app[TRANSLATOR].store.get(done_id)
    assert done_session is not None
    log = [e.as_dict() for e in done_session.log]
    resume = st.one_of(st.none(), NUMBERISH.filter(lambda s: s.isprintable()), HEADER_TEXT,
                       st.integers(-3, len(log) + 3).map(str))

    async def check(example: tuple[str, str | None, str | None]) -> str:
        session_id, last_event_id, after = example
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            response = await client.get(f"/api/sessions/{session_id}/events", headers=headers,
                                        params={"after": after} if after is not None else None)
        except ValueError:
            return "unsendable"  # a header value this client refuses to send
        if response.status == 204:
            assert session_id != done_id and not await response.read()
            return "204"
        if response.status != 200:
            status, body = await answer(response)
            assert body["error"]["code"] == "bad_request", (status, body)
            return outcome(status, body)
        assert response.content_type == "text/event-stream"
        events = parse_sse((await response.read()).decode())
        assert events == log[len(log) - len(events):], "an SSE replay must be a suffix of the log"
        point = (last_event_id or "").strip() or after
        if point is not None and re.fullmatch(r"-?[0-9]{1,6}", point.strip()):
            assert events == log[max(0, int(point)):], (point, events)
        return f"200 with {len(events)} events"

    ids = st.sampled_from([done_id, done_id, "nope"])
    await asyncio.to_thread(fuzz, asyncio.get_running_loop(), st.tuples(ids, resume, st.none() | resume), check, 300)
    await translation_works(client)


# -- WebSocket frames ----------------------------------------------------------------------------------------

WS_TYPES = st.sampled_from(["translate", "resume", "cancel", "ping", "pong", "hello", "error", "", "TRANSLATE"])


class Socket:
    """One WebSocket under fuzz: send a frame, then a ping, and collect everything up to the matching pong.

    Events of the sessions that earlier frames started stream in meanwhile; they are kept per session."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.opened = 0
        self.sessions: dict[str, list[dict[str, Any]]] = {}

    async def open(self) -> aiohttp.ClientWebSocketResponse:
        """The socket; a fresh one after a failed example killed it, so that hypothesis can shrink that example."""
        if self.ws is None or self.ws.closed:
            self.ws = await self.client.ws_connect("/ws")
            self.opened += 1
            assert json.loads((await self.ws.receive()).data)["type"] == "hello"
        return self.ws

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def exchange(self, kind: str, data: str | bytes, pings: int) -> list[dict[str, Any]]:
        self.ws = await self.open()
        if kind == "bytes":
            assert isinstance(data, bytes)
            await self.ws.send_bytes(data)
        else:
            assert isinstance(data, str)
            await self.ws.send_str(data)
        await self.ws.send_str('{"type": "ping"}')
        answers: list[dict[str, Any]] = []
        pongs = 0
        while pongs < pings + 1:
            frame = await self.receive()
            if frame["type"] == "pong":
                pongs += 1
            elif frame["type"] == "error" and "seq" not in frame:
                check_ws_error(frame)
                answers.append(frame)
        return answers

    async def receive(self) -> dict[str, Any]:
        assert self.ws is not None
        message = await self.ws.receive()
        assert message.type == WSMsgType.TEXT, f"the socket ended: {message} (close code {self.ws.close_code})"
        frame = json.loads(message.data)
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        if "seq" in frame:
            check_event(frame)
            self.sessions.setdefault(frame["session"], []).append(frame)
        return frame


def ws_examples(known: list[str]) -> st.SearchStrategy[tuple[str, str | bytes, Any]]:
    """Frames: text, JSON values, near-valid messages (naming sessions from `known`, which grows), binary."""
    sessions = st.one_of(st.integers(0, 10**6).map(lambda i: known[i % len(known)]), JSON_VALUES)
    message = st.fixed_dictionaries({"type": WS_TYPES}, optional={
        "text": TEXTS, "source": LANGS, "target": LANGS, "ref": JSON_VALUES, "session": sessions,
        "after": st.one_of(st.integers(-5, 50), JSON_VALUES)})
    translate = st.fixed_dictionaries({
        "type": st.just("translate"), "text": st.one_of(st.sampled_from(["Hello there", "你好"]), ODD_TEXT),
        "source": st.sampled_from([*CODES, AUTO]), "target": st.sampled_from(CODES)}, optional={"ref": JSON_VALUES})
    frames: list[st.SearchStrategy[tuple[str, str | bytes, Any]]] = [
        st.text(st.characters(codec="utf-8"), max_size=60).map(lambda t: ("text", t, None)),
        JSON_VALUES.map(lambda v: ("json", json.dumps(v), v)),
        message.map(lambda m: ("json", json.dumps(m), m)),
        translate.map(lambda m: ("json", json.dumps(m), m)),
        st.binary(max_size=200).map(lambda b: ("bytes", b, None)),
    ]
    return st.one_of(*frames)


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def test_websocket_frames(make_client: MakeClient) -> None:
    client = await make_client()
    done_id = await finished_session(client)
    known = [done_id]
    translates = 0  # translate messages the server took (answered with no error)
    resumed: set[str] = set()  # sessions the fuzzer resumed or cancelled: no single clean stream to check
    socket = Socket(client)
    try:

        async def check(example: tuple[str, str | bytes, Any]) -> str:
            nonlocal translates
            kind, data, value = example
            pings = 1 if isinstance(value, dict) and value.get("type") == "ping" else 0
            answers = await socket.exchange(kind, data, pings)
            codes = [a["code"] for a in answers]
            known.extend(set(socket.sessions) - set(known))
            if kind == "bytes" or (kind == "text" and not is_json(str(data))):
                assert codes == ["bad_request"], answers
                return f"{kind}: bad_request"
            if not isinstance(value, dict) or value.get("type") not in ("translate", "resume", "cancel", "ping",
                                                                        "pong"):
                assert codes == ["bad_request"], answers
                return "json: bad_request"
            assert len(answers) <= 1, answers
            if value["type"] == "translate":
                if expected_codes(value):
                    assert answers and answers[0]["code"] in expected_codes(value), (value, answers)
                translates += not answers
            elif value["type"] in ("resume", "cancel") and isinstance(value.get("session"), str):
                resumed.add(value["session"])
            return f"{value['type']}: {codes[0] if codes else 'ok'}"

        await asyncio.to_thread(fuzz, asyncio.get_running_loop(), ws_examples(known), check, 500)
        assert socket.opened == 1 and socket.ws is not None and not socket.ws.closed, "a frame closed the socket"
        # No hung reader: every session this socket started is heard of, and each one it followed from the
        # start without resuming or cancelling ends with its terminal event, every seq once, in order.
        try:
            async with asyncio.timeout(BOUND_S):
                while True:
                    started = set(socket.sessions) - {done_id}
                    ended = {s for s in started if socket.sessions[s][-1]["type"] in TERMINAL}
                    if len(started) >= translates and ended >= started - resumed:
                        break
                    await socket.receive()
        except TimeoutError:
            pytest.fail(f"{translates} translations taken, {len(started)} heard of, "
                        f"{len(started - resumed - ended)} never ended")
        assert len(started) == translates
        for session in started - resumed:
            events = socket.sessions[session]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
            if events[-1]["type"] == "done":
                assert "".join(e["text"] for e in events if e["type"] == "delta") == events[-1]["text"]
        print(f"websocket: {translates} sessions started, {len(started - resumed)} followed to the end, "
              f"{sum(len(e) for e in socket.sessions.values())} events")
        # The same socket still translates.
        await socket.ws.send_json({"type": "translate", "text": "Good morning", "source": "en", "target": "fr",
                                   "ref": 7})
        ref_session: str | None = None
        async with asyncio.timeout(BOUND_S):
            while True:
                frame = await socket.receive()
                if frame.get("ref") == 7:
                    ref_session = frame["session"]
                if frame["type"] == "done" and frame.get("session") == ref_session:
                    break
    finally:
        await socket.close()
    await translation_works(client)


@pytest.mark.parametrize("field", ["ref", "session", "text", "source"])
async def test_websocket_lone_surrogate_gets_an_answer(client: TestClient[Any, Any], field: str) -> None:
    """Minimal repro: a lone surrogate (escaped, so valid JSON) in a WS translate must get an answer: the session's
    events through `done`, or an `error`; and the socket stays open.

    Seen failing: with it in `text` the tokenizer raises TypeError and the socket closes (1006); with it in `ref`
    the server's json.dumps(ensure_ascii=False) + send_str cannot encode the echo as UTF-8, the forwarding task
    dies, and the client never hears of its session (a hung reader).
    """
    message = {"type": "translate", "text": "Hello", "source": "en", "target": "fr", "ref": 1}
    message[field] = "x\ud800y"
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        await ws.send_str(json.dumps(message))
        await ws.send_str('{"type": "ping"}')
        pong = answered = False
        try:
            async with asyncio.timeout(5):
                while not (pong and answered):
                    received = await ws.receive()
                    assert received.type == WSMsgType.TEXT, f"the socket ended: {received} ({ws.close_code})"
                    frame = json.loads(received.data)
                    pong = pong or frame["type"] == "pong"
                    answered = answered or frame["type"] in TERMINAL
        except TimeoutError:
            pytest.fail(f"no answer to the translate (pong: {pong})")
        assert not ws.closed


async def test_websocket_oversized_frame_closes_with_1009(make_client: MakeClient) -> None:
    client = await make_client()
    assert client.app is not None
    limit = client.app[SETTINGS].limits.max_ws_frame_bytes
    async with client.ws_connect("/ws", max_msg_size=0) as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        # Under the limit but over max_chars: an error, and the socket stays.
        await ws.send_json({"type": "translate", "text": "a" * (MAX_CHARS + 1), "target": "fr"})
        assert json.loads((await ws.receive()).data)["code"] == "too_long"
        await ws.send_str(json.dumps({"type": "translate", "text": "a" * limit, "target": "fr"}))
        async with asyncio.timeout(BOUND_S):
            message = await ws.receive()
            while message.type == WSMsgType.TEXT:
                message = await ws.receive()
        assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), message
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG, ws.close_code
    await translation_works(client)


async def test_websocket_invalid_utf8_text_closes_with_1007(make_client: MakeClient) -> None:
    client = await make_client()
    async with client.ws_connect("/ws") as ws:
        assert json.loads((await ws.receive()).data)["type"] == "hello"
        # A TEXT frame whose payload is not UTF-8: only the raw writer can send one.
        await ws._writer.send_frame(b'{"type": "ping", "x": "\xff\xfe"}', WSMsgType.TEXT)
        async with asyncio.timeout(BOUND_S):
            message = await ws.receive()
            while message.type == WSMsgType.TEXT:
                message = await ws.receive()
        assert ws.close_code == WSCloseCode.INVALID_TEXT, (message, ws.close_code)
    await translation_works(client)


def test_error_codes_are_documented() -> None:
    """Every stable code the server can send is in the protocol's error table, with the same HTTP status."""
    documented = documented_codes()
    assert {code: kind.http_status for code, kind in errors.KINDS.items()} == documented
