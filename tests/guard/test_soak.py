"""A bounded soak on loopback: hundreds of concurrent clients over WebSocket, SSE and long-poll at once, dropping
and resuming (also on another transport), some cancelling; then the sessions expire and memory must come back.

Each client has its own aiohttp ClientSession against the real server port (pytest-aiohttp serves the whole app on
127.0.0.1 with the real demo-model engine). Every reader must end with exactly `done.text`, every seq once and in
order; a cancelled session ends with exactly one `cancelled`.

Short form in `make test` (200 clients); longer: `HMT_SOAK_CLIENTS=2000` (or `pytest tests/guard --soak-clients
2000`). `HMT_SOAK_SEED` / `--soak-seed` replays a run; the seed is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import statistics
import time
import tracemalloc
import weakref
from array import array
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from hmt_stream.keys import TRANSLATOR
from hmt_stream.request import TranslationRequest
from hmt_stream.session import Event, TranslationSession
from hmt_stream.translator import Translator

from .conftest import SOAK_REPORT, MakeClient, option_or_env

pytestmark = pytest.mark.slow

TRANSPORTS = ("ws", "sse", "poll")
TERMINAL = ("done", "error", "cancelled")
TEXTS = ["Hello there, how are you?", "Good morning", "See you tomorrow", "The weather is nice today.",
         "Where is the station?", "你好，世界", "Bonjour à tous", "Thank you very much"]
TARGETS = ["fr", "de", "zh", "ja", "es", "en"]
# session.retention_s: short, so that memory can be seen to come back within the test, yet longer than a reader
# may lag behind its session when two cores run 200 clients, the server and four generation threads at once.
RETENTION_S = 15.0
# Median time from the server appending an event to a reader receiving it, per transport, at most this.
LAG_MEDIAN_S = 1.5
CLIENT_TIMEOUT_S = 240.0
# RSS after the sessions expire may exceed the baseline by at most this: allocators keep freed arenas, and the
# process's RSS settles at its working-set plateau (about +60 MB at 200 clients, +150 MB at 1000, 250 at a time).
RSS_SLACK_MB = 250.0
# Python heap still traced (tracemalloc) after expiry, above the baseline, at most this.
HEAP_SLACK_MB = 8.0


class Seen:
    """Diagnostics only: the server's sessions, weakly held, to say when one ended if a reader finds it gone."""

    def __init__(self) -> None:
        self.sessions: weakref.WeakValueDictionary[str, TranslationSession] = weakref.WeakValueDictionary()
        self.finished: dict[str, float] = {}

    def watch(self, translator: Translator) -> None:
        for session in translator.store.all():
            self.sessions.setdefault(session.id, session)
            if session.finished_at is not None:
                self.finished.setdefault(session.id, session.finished_at)

    def describe(self, session_id: str) -> str:
        session = self.sessions.get(session_id)
        at = self.finished.get(session_id)
        log = f"{session.last_seq} events, {session.state}" if session is not None else "evicted"
        ended = f"ended {time.monotonic() - at:.2f} s ago (at {at:.2f})" if at is not None else "not seen ending"
        return f"session {session_id}: {log}, {ended}"


seen = Seen()


class AppendClock:
    """When the server appended each event (patched into TranslationSession.append), to measure delivery lag."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: dict[tuple[str, int], float] = {}
        self.lags: dict[str, array[float]] = {t: array("d") for t in TRANSPORTS}
        append = TranslationSession.append
        clock = self

        def timed(self: TranslationSession, type: str, **data: Any) -> Event:
            event = append(self, type, **data)
            clock.at[self.id, event.seq] = time.monotonic()
            return event

        monkeypatch.setattr(TranslationSession, "append", timed)

    def count(self, readers: list[Reader]) -> None:
        """Record the readers' lags, then forget their session's appends (a long soak has millions)."""
        for reader in readers:
            for event, at, transport in zip(reader.events, reader.received, reader.transports, strict=True):
                self.lags[transport].append(at - self.at[reader.session, event["seq"]])
        if readers:
            for seq in range(1, len(readers[0].events) + 1):
                self.at.pop((readers[0].session, seq), None)

    def summary(self) -> dict[str, str]:
        return {t: f"{len(v)} events, max {max(v):.2f} s, p99 {sorted(v)[int(0.99 * len(v))]:.3f} s, "
                   f"median {statistics.median(v):.3f} s" for t, v in self.lags.items() if v}

    def clear(self) -> None:
        self.at.clear()
        self.lags.clear()
        seen.sessions.clear()
        seen.finished.clear()


class SoakError(AssertionError):
    """The server answered something a well-behaved client cannot go on from."""


@dataclass
class Stats:
    clients: int = 0
    sessions: int = 0
    events: int = 0
    drops: int = 0
    server_drops: Counter[str] = field(default_factory=Counter)
    abandoned_polls: int = 0
    resumes: int = 0
    cross_resumes: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    observers: int = 0
    one_shots: int = 0
    legs: Counter[str] = field(default_factory=Counter)
    resume_gaps: list[float] = field(default_factory=list)  # seconds from a drop to the next connection
    terminals: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    finished: int = 0
    clock: AppendClock | None = None
    wave: int = 0  # clients that wait for each other before the first request, so that all are in flight at once
    gate: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Plan:
    """What one client will do, drawn up front from the seeded generator."""

    first: str
    text: str
    target: str
    drops: list[tuple[str, int]]  # ("leg", k): after the k-th event of a connection; ("delta", j): j-th delta
    cancel: tuple[str, int, str] | None  # (trigger kind, count, "delete" | "ws")
    observer: str | None  # a second reader on this transport, from seq 0, no drops
    one_shot: bool


def draw_plan(rng: random.Random) -> Plan:
    drops = [(rng.choice(["leg", "delta"]), rng.randint(1, 6)) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
    cancel = None
    if rng.random() < 0.12:
        cancel = (rng.choice(["leg", "delta", "queued"]), rng.randint(1, 3), rng.choice(["delete", "ws"]))
    return Plan(first=rng.choice(TRANSPORTS), text=rng.choice(TEXTS), target=rng.choice(TARGETS), drops=drops,
                cancel=cancel, observer=rng.choice(TRANSPORTS) if rng.random() < 0.15 else None,
                one_shot=rng.random() < 0.05)


# -- one connection of each transport ----------------------------------------------------------------------

class Leg:
    """One connection that reads a session from `after`: yields its events until the terminal one or a drop."""

    transport = ""

    def __init__(self, http: aiohttp.ClientSession, session: str | None, after: int, rng: random.Random) -> None:
        self.http = http
        self.session = session
        self.after = after
        self.rng = rng

    def events(self) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError

    async def cancel(self) -> str:
        """Cancel the session over HTTP; returns the state the DELETE answered with."""
        async with self.http.delete(f"/api/sessions/{self.session}") as response:
            if response.status != 200:
                raise SoakError(f"DELETE answered {response.status}: {await response.text()}")
            return str((await response.json())["state"])

    async def close(self, abrupt: bool) -> None:
        """Drop the connection (abrupt: without a goodbye)."""


class WsLeg(Leg):
    transport = "ws"

    def __init__(self, http: aiohttp.ClientSession, session: str | None, after: int, rng: random.Random,
                 create: dict[str, Any] | None = None) -> None:
        super().__init__(http, session, after, rng)
        self.create = create
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        self.ws = ws = await self.http.ws_connect("/ws")
        hello = await ws.receive()
        if hello.type != WSMsgType.TEXT or json.loads(hello.data)["type"] != "hello":
            raise SoakError(f"no hello on the WebSocket: {hello}")
        if self.create is not None:
            await ws.send_json({"type": "translate", **self.create})
        else:
            await ws.send_json({"type": "resume", "session": self.session, "after": self.after})
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                return
            frame = json.loads(message.data)
            if frame["type"] == "ping":
                await ws.send_json({"type": "pong"})
            elif frame["type"] == "error" and "seq" not in frame:
                raise SoakError(f"WebSocket error: {frame}")
            elif "seq" in frame:
                if self.session is None and self.create is not None and frame.get("ref") == self.create["ref"]:
                    self.session = frame["session"]
                if frame["session"] == self.session:
                    frame.pop("ref", None)
                    yield frame
                    if frame["type"] in TERMINAL:
                        return

    async def cancel(self) -> str:
        assert self.ws is not None
        await self.ws.send_json({"type": "cancel", "session": self.session})
        return "?"  # no answer on a WebSocket: the terminal event tells

    async def close(self, abrupt: bool) -> None:
        if self.ws is None:
            return
        if abrupt and self.ws._writer.transport is not None:
            self.ws._writer.transport.abort()  # gone without a close frame; the session cleans up the rest
        # A clean close waits for the server's close frame; after an abort there is none to wait for.
        with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
            async with asyncio.timeout(0.1 if abrupt else 5.0):
                await self.ws.close()


class SseLeg(Leg):
    transport = "sse"
    response: aiohttp.ClientResponse | None = None

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        headers = {"Accept": "text/event-stream"}
        params = {}
        if self.after and self.rng.random() < 0.5:  # EventSource's way, or the first request's
            headers["Last-Event-ID"] = str(self.after)
        elif self.after:
            params["after"] = str(self.after)
        self.response = response = await self.http.get(f"/api/sessions/{self.session}/events", headers=headers,
                                                       params=params)
        if response.status != 200:
            raise SoakError(f"SSE answered {response.status}: {await response.text()}")
        while True:
            frame = (await response.content.readuntil(b"\r\n\r\n")).decode()
            if not frame.strip():
                return  # the server ended the stream
            if frame.startswith(":"):
                continue
            data = next(line[6:] for line in frame.split("\r\n") if line.startswith("data: "))
            event = json.loads(data)
            yield event
            if event["type"] in TERMINAL:
                return

    async def close(self, abrupt: bool) -> None:
        if self.response is not None:
            self.response.close()


class PollLeg(Leg):
    transport = "poll"

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        after = self.after
        while True:
            url = f"/api/sessions/{self.session}/events"
            async with self.http.get(url, params={"after": str(after), "timeout": "10"}) as response:
                if response.status != 200:
                    raise SoakError(f"poll answered {response.status}: {await response.text()}")
                page = await response.json()
            for event in page["events"]:
                yield event
            after = page["next"]
            if page["done"]:
                return


async def create_session(http: aiohttp.ClientSession, plan: Plan) -> str:
    body = {"text": plan.text, "source": "auto", "target": plan.target}
    async with http.post("/api/sessions", json=body) as response:
        if response.status != 201:
            raise SoakError(f"POST /api/sessions answered {response.status}: {await response.text()}")
        return str((await response.json())["session"])


def open_leg(transport: str, http: aiohttp.ClientSession, session: str | None, after: int, rng: random.Random,
             create: dict[str, Any] | None = None) -> Leg:
    if transport == "ws":
        return WsLeg(http, session, after, rng, create)
    return (SseLeg if transport == "sse" else PollLeg)(http, session, after, rng)


# -- one client --------------------------------------------------------------------------------------------

@dataclass
class Reader:
    """Everything one reader received about one session, across all its connections."""

    session: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    cancel_state: str | None = None  # the state DELETE answered ("?" for a WS cancel), if it cancelled
    history: list[str] = field(default_factory=list)  # its connections, for a failure's message
    received: list[float] = field(default_factory=list)  # when each event arrived (time.monotonic)
    transports: list[str] = field(default_factory=list)  # which transport brought it


async def read_session(http: aiohttp.ClientSession, plan: Plan, rng: random.Random, stats: Stats,
                       reader: Reader, *, drops: bool = True, transport: str | None = None) -> None:
    """Follow a session to its terminal event, dropping and resuming as the plan says."""
    transport = transport or plan.first
    pending_drops = list(plan.drops) if drops else []
    cancel = plan.cancel if drops else None
    ref = rng.randrange(1 << 30)
    while True:
        create = None
        if not reader.session:
            create = {"text": plan.text, "source": "auto", "target": plan.target, "ref": ref}
        after = reader.events[-1]["seq"] if reader.events else 0
        leg = open_leg(transport, http, reader.session or None, after, rng, create)
        stats.legs[transport] += 1
        in_leg = 0
        dropped = False
        opened = time.monotonic()
        try:
            async with contextlib.aclosing(leg.events()) as events:
                async for event in events:
                    reader.session = reader.session or event["session"]
                    reader.events.append(event)
                    reader.received.append(time.monotonic())
                    reader.transports.append(transport)
                    in_leg += 1
                    if event["type"] in TERMINAL:
                        break
                    deltas = sum(e["type"] == "delta" for e in reader.events)
                    if cancel is not None and reader.cancel_state is None and due(cancel, event, in_leg, deltas):
                        via = "ws" if cancel[2] == "ws" and transport == "ws" else "delete"
                        reader.cancel_state = await (leg.cancel() if via == "ws" else Leg.cancel(leg))
                        stats.cancels[via] += 1
                    if pending_drops and due(pending_drops[0], event, in_leg, deltas):
                        pending_drops.pop(0)
                        dropped = True
                        break
        except SoakError as exc:
            raise SoakError(f"{exc} [{transport} from seq {after}, {time.monotonic() - opened:.2f} s after it "
                            f"opened; {seen.describe(reader.session)}; before: {'; '.join(reader.history)}]") from None
        finally:
            gone = time.monotonic()
            await leg.close(abrupt=rng.random() < 0.5)
            reader.history.append(f"{transport} seq {after}..{reader.events[-1]['seq'] if reader.events else 0} "
                                  f"{'dropped' if dropped else 'ended'} after {gone - opened:.2f} s, "
                                  f"closed in {time.monotonic() - gone:.2f} s, {time.monotonic():.2f}")
        if reader.events and reader.events[-1]["type"] in TERMINAL:
            return
        if dropped:
            stats.drops += 1
        else:
            stats.server_drops[transport] += 1  # the server ended the connection before the terminal event
            if sum(stats.server_drops.values()) > 10 * max(1, stats.clients):
                raise SoakError("the server keeps ending connections before the terminal event")
        if not reader.session:
            raise SoakError("a WebSocket translate was dropped before its first event")
        if rng.random() < 0.3:
            await abandon_poll(http, reader, rng)
            stats.abandoned_polls += 1
        await asyncio.sleep(rng.uniform(0, 0.1))
        following = rng.choice(TRANSPORTS)
        stats.resumes += 1
        stats.cross_resumes += following != transport
        stats.resume_gaps.append(time.monotonic() - gone)
        transport = following


def due(trigger: tuple[Any, ...], event: dict[str, Any], in_leg: int, deltas: int) -> bool:
    """Whether a drop or cancel trigger fires on this event."""
    kind, count = str(trigger[0]), int(trigger[1])
    if kind == "leg":
        return in_leg >= count
    if kind == "delta":
        return bool(event["type"] == "delta") and deltas >= count
    return bool(event["type"] == "queued")


async def abandon_poll(http: aiohttp.ClientSession, reader: Reader, rng: random.Random) -> None:
    """A long-poll that the client gives up on while it waits (a dropped pending request)."""
    after = reader.events[-1]["seq"] if reader.events else 0
    request = asyncio.ensure_future(http.get(f"/api/sessions/{reader.session}/events",
                                             params={"after": str(after), "timeout": "10"}))
    await asyncio.sleep(rng.uniform(0, 0.05))
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
        response = await request
        response.close()


@dataclass
class Outcome:
    plan: Plan
    readers: list[Reader]
    seconds: float
    one_shot: dict[str, Any] | None = None


async def run_client(base: str, plan: Plan, rng: random.Random, stats: Stats) -> Outcome:
    started = time.monotonic()
    stats.active += 1
    stats.max_active = max(stats.max_active, stats.active)
    if stats.active >= stats.wave:
        stats.gate.set()
    try:
        await stats.gate.wait()
        async with asyncio.timeout(CLIENT_TIMEOUT_S), aiohttp.ClientSession(base) as http:
            if plan.one_shot:
                body = {"text": plan.text, "source": "auto", "target": plan.target}
                async with http.post("/api/translate", json=body) as response:
                    if response.status != 200:
                        raise SoakError(f"POST /api/translate answered {response.status}: {await response.text()}")
                    stats.one_shots += 1
                    return Outcome(plan, [], time.monotonic() - started, await response.json())
            reader = Reader()
            if plan.first != "ws":
                reader.session = await create_session(http, plan)
            if plan.observer is None:
                await read_session(http, plan, rng, stats, reader)
                return Outcome(plan, [reader], time.monotonic() - started)
            main = asyncio.create_task(read_session(http, plan, rng, stats, reader))
            while not reader.session and not main.done():
                await asyncio.sleep(0.01)
            observer = asyncio.create_task(observe(http, plan, rng, stats, reader.session))
            try:
                await main
                return Outcome(plan, [reader, await observer], time.monotonic() - started)
            finally:
                for task in (main, observer):
                    task.cancel()
                await asyncio.gather(main, observer, return_exceptions=True)
    finally:
        stats.active -= 1
        stats.finished += 1


async def observe(http: aiohttp.ClientSession, plan: Plan, rng: random.Random, stats: Stats, session: str) -> Reader:
    stats.observers += 1
    reader = Reader(session=session)
    await read_session(http, plan, rng, stats, reader, drops=False, transport=plan.observer)
    return reader


# -- checks ------------------------------------------------------------------------------------------------

def check_reader(plan: Plan, reader: Reader, stats: Stats) -> None:
    events = reader.events
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"seqs missing or repeated in {reader.session}: {seqs}"
    assert all(e["session"] == reader.session for e in events)
    types = [e["type"] for e in events]
    assert sum(t in TERMINAL for t in types) == 1 and types[-1] in TERMINAL, types
    stats.terminals[types[-1]] += 1
    if types[-1] == "done":
        assert "".join(e["text"] for e in events if e["type"] == "delta") == events[-1]["text"], events
    if reader.cancel_state is None:
        assert types[-1] == "done", f"{reader.session} was not cancelled but ended with {events[-1]} ({plan}, {events})"
    elif reader.cancel_state == "?":  # a WS cancel: the session may have finished before it arrived
        assert types[-1] in ("cancelled", "done"), events[-1]
    else:
        expected = "done" if reader.cancel_state == "done" else "cancelled"
        assert types[-1] == expected, f"DELETE answered {reader.cancel_state}; the log ended {events[-1]}"


def check(outcome: Outcome, stats: Stats) -> None:
    if outcome.one_shot is not None:
        assert isinstance(outcome.one_shot["text"], str) and outcome.one_shot["cached"] is False
        return
    main, *observers = outcome.readers
    check_reader(outcome.plan, main, stats)
    for observer in observers:
        # The same log, every seq once, whichever transport read it and however often the other one dropped.
        assert observer.events == main.events, f"two readers of {main.session} saw different logs"
    stats.durations.append(outcome.seconds)


# -- memory ------------------------------------------------------------------------------------------------

def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def live(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def expired(translator: Translator, bound_s: float) -> float:
    """Wait for the store to empty (retention_s after the last terminal event); returns the seconds waited."""
    started = time.monotonic()
    while len(translator.store) and time.monotonic() - started < bound_s:
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def sample_peak(peak: dict[str, float], translator: Translator, stats: Stats) -> None:
    """Peaks of RSS, sessions in the store, the wait queue, and event-loop lag (how late a 0.25 s sleep wakes);
    a progress line every 30 s."""
    loop = asyncio.get_running_loop()
    started = last = loop.time()
    while True:
        if loop.time() - last >= 30:
            last = loop.time()
            print(f"soak: {loop.time() - started:.0f} s, {stats.finished}/{stats.clients} clients done, "
                  f"{stats.active} in flight, {len(translator.store)} sessions stored, "
                  f"{translator.scheduler.queued} queued, RSS {rss_mb():.0f} MB", flush=True)
        peak["rss"] = max(peak["rss"], rss_mb())
        peak["store"] = max(peak["store"], len(translator.store))
        peak["queued"] = max(peak["queued"], translator.scheduler.queued)
        asleep = loop.time()
        await asyncio.sleep(0.25)
        peak["lag"] = max(peak["lag"], loop.time() - asleep - 0.25)
        seen.watch(translator)


# -- the soak ----------------------------------------------------------------------------------------------

def traffic(stats: Stats) -> dict[str, Any]:
    return {
        "clients": stats.clients, "max_concurrent_clients": stats.max_active, "sessions": stats.sessions,
        "events_received": stats.events, "drops": stats.drops, "server_drops": dict(stats.server_drops),
        "abandoned_polls": stats.abandoned_polls, "resumes": stats.resumes,
        "cross_transport_resumes": stats.cross_resumes, "resume_gap_s_max": round(max(stats.resume_gaps, default=0), 2),
        "cancels": dict(stats.cancels), "observers": stats.observers, "one_shots": stats.one_shots,
        "connections": dict(stats.legs), "terminals": dict(stats.terminals),
    }


async def run_round(base: str, count: int, rng: random.Random, stats: Stats, spread_s: float,
                    concurrency: int) -> None:
    """`count` clients, at most `concurrency` at a time; the first `concurrency` arrive over `spread_s` seconds
    and start together once all have arrived."""
    slots = asyncio.Semaphore(concurrency)

    async def staggered(plan: Plan, seed: int) -> None:
        await asyncio.sleep(rng.uniform(0, spread_s))
        async with slots:
            outcome = await run_client(base, plan, random.Random(seed), stats)
        # Checked and let go at once: the events a long soak receives would otherwise weigh on the memory figures.
        check(outcome, stats)
        stats.sessions += 1
        stats.events += sum(len(r.events) for r in outcome.readers)
        if stats.clock is not None:
            stats.clock.count(outcome.readers)

    plans = [draw_plan(rng) for _ in range(count)]
    stats.clients += count
    stats.wave = min(count, concurrency)
    results = await asyncio.gather(*(staggered(p, rng.randrange(1 << 32)) for p in plans), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        kinds = Counter(f"{type(f).__name__}: {str(f)[:200]}" for f in failures)
        message = f"{len(failures)} of {count} clients failed: {dict(kinds.most_common(5))}"
        raise AssertionError(message) from failures[0]


async def test_soak(make_client: MakeClient, request: pytest.FixtureRequest, record_property: Any,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    clients = option_or_env(request.config, "--soak-clients", "HMT_SOAK_CLIENTS") or 200
    concurrency = min(clients, option_or_env(request.config, "--soak-concurrency", "HMT_SOAK_CONCURRENCY") or 250)
    seed = option_or_env(request.config, "--soak-seed", "HMT_SOAK_SEED")
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"\nsoak: {clients} clients, {concurrency} at a time, seed {seed} (replay: HMT_SOAK_SEED={seed})")
    rng = random.Random(seed)
    sized = {"scheduler__max_concurrent": 4, "generation__workers": 4, "generation__max_new_tokens": 12,
             "scheduler__max_queue": max(1000, concurrency + 100)}

    # Warm up thread pools, connection code paths and lazily built objects on a twin server whose sessions expire
    # soon; then take the baseline.
    warm: TestClient[Any, Any] = await make_client(**sized, session__retention_s=2.0)
    assert warm.app is not None
    await run_round(str(warm.make_url("/")), 20, rng, Stats(), 0.2, 20)
    await expired(warm.app[TRANSLATOR], 10)
    client: TestClient[Any, Any] = await make_client(**sized, session__retention_s=RETENTION_S)
    assert client.app is not None
    translator = client.app[TRANSLATOR]
    base = str(client.make_url("/"))
    gc.collect()
    tracemalloc.start()
    baseline = {"rss": rss_mb(), "heap": tracemalloc.get_traced_memory()[0] / 2**20, "tasks": len(asyncio.all_tasks()),
                "sessions": live(TranslationSession), "events": live(Event)}

    stats = Stats()
    clock = stats.clock = AppendClock(monkeypatch)
    peak = {"rss": baseline["rss"], "store": 0.0, "queued": 0.0, "lag": 0.0}
    sampler = asyncio.create_task(sample_peak(peak, translator, stats))
    started = time.monotonic()
    try:
        # Every client of the short form is in flight at once; a long form keeps `concurrency` in flight.
        await run_round(base, clients, rng, stats, 1.0, concurrency)
    except BaseException:
        print(f"soak failed after {time.monotonic() - started:.1f} s (seed {seed}): {traffic(stats)}; "
              f"peaks: {peak}; delivery lag: {clock.summary()}")
        raise
    finally:
        sampler.cancel()
    soak_s = time.monotonic() - started
    peak["heap"] = tracemalloc.get_traced_memory()[1] / 2**20
    lag = clock.summary()
    medians = {t: statistics.median(v) for t, v in clock.lags.items() if v}
    clock.clear()  # records allocated during the soak, which must not count as memory left behind

    waited = await expired(translator, RETENTION_S + 30)
    gc.collect()
    after = {"rss": rss_mb(), "heap": tracemalloc.get_traced_memory()[0] / 2**20, "tasks": len(asyncio.all_tasks()),
             "sessions": live(TranslationSession), "events": live(Event)}
    tracemalloc.stop()

    durations = sorted(stats.durations)
    report = {
        "seed": seed, **traffic(stats), "soak_s": round(soak_s, 1),
        "client_s_p50": round(statistics.median(durations), 2),
        "client_s_p95": round(durations[int(0.95 * (len(durations) - 1))], 2), "client_s_max": round(durations[-1], 2),
        "peak_store": int(peak["store"]), "peak_queue": int(peak["queued"]), "max_loop_lag_s": round(peak["lag"], 2),
        "delivery_lag": lag, "expiry_wait_s": round(waited, 1),
        "rss_mb": f"baseline {baseline['rss']:.0f}, peak {peak['rss']:.0f}, after {after['rss']:.0f}",
        "heap_mb": f"baseline {baseline['heap']:.1f}, peak {peak['heap']:.1f}, after {after['heap']:.1f}",
        "live_sessions": f"baseline {baseline['sessions']}, after {after['sessions']}",
        "live_events": f"baseline {baseline['events']}, after {after['events']}",
        "asyncio_tasks": f"baseline {baseline['tasks']}, after {after['tasks']}",
    }
    lines = [f"{key}: {value}" for key, value in report.items()]
    print("\n".join(["soak results:", *lines]))
    SOAK_REPORT.extend(lines)
    for key, value in report.items():
        record_property(f"soak_{key}", value)

    assert stats.max_active >= min(concurrency, 200), "fewer clients in flight at once than the soak promises"
    for transport, median in medians.items():
        assert median < LAG_MEDIAN_S, f"{transport} readers lag behind the log: {lag}"
    assert stats.drops and stats.resumes and stats.cross_resumes and sum(stats.cancels.values()), report
    assert len(translator.store) == 0, f"{len(translator.store)} sessions never expired"
    assert translator.scheduler.running == 0 and translator.scheduler.queued == 0
    # Against the baseline, not zero: a failed test earlier in the run keeps its frames, and so its sessions.
    assert after["sessions"] <= baseline["sessions"], f"{after['sessions'] - baseline['sessions']} sessions alive"
    assert after["events"] <= baseline["events"], f"{after['events'] - baseline['events']} events still alive"
    assert after["tasks"] <= baseline["tasks"] + 2, "tasks left behind"
    assert after["heap"] - baseline["heap"] < HEAP_SLACK_MB, report["heap_mb"]
    assert after["rss"] - baseline["rss"] < RSS_SLACK_MB, report["rss_mb"]


async def test_a_burst_reaches_websocket_readers_as_fast_as_sse_on_a_busy_loop(client: TestClient[Any, Any]) -> None:
    """Minimal repro of the soak's WebSocket lag: the WS transport wraps every frame's send in asyncio.wait_for,
    which on Python 3.11 runs it as a new Task, so each frame waits a full turn of the event loop. On a busy loop
    (here: 100 tasks that each take 0.1 ms a turn) a burst of events reaches a WS reader many times slower than
    an SSE reader, whose sends complete without yielding."""
    assert client.app is not None
    session = TranslationSession(TranslationRequest("Hello", "auto", "fr"))
    client.app[TRANSLATOR].store.add(session)
    stop = False

    async def busy() -> None:
        while not stop:
            end = time.perf_counter() + 0.0001
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    async def read(transport: str) -> float:
        reader = Reader(session=session.id)
        async with aiohttp.ClientSession(str(client.make_url("/"))) as http:
            leg = open_leg(transport, http, session.id, 0, random.Random(0))
            async with contextlib.aclosing(leg.events()) as events:
                async for event in events:
                    reader.events.append(event)
                    if event["type"] == "started":
                        following.append(transport)
            await leg.close(abrupt=False)
        assert [e["seq"] for e in reader.events] == list(range(1, 303))
        return time.monotonic() - burst_at

    following: list[str] = []
    burst_at = 0.0
    session.append("started")
    readers = [asyncio.create_task(read(t)) for t in ("ws", "sse")]
    async with asyncio.timeout(5):
        while len(following) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # both are following, waiting for more
    spinners = [asyncio.create_task(busy()) for _ in range(100)]
    burst_at = time.monotonic()
    for i in range(300):
        session.append("delta", text=f"{i} ")
    session.append("done", text=session.text, cached=False, tokens=300, ttft_ms=0.0, elapsed_ms=0.0)
    try:
        ws_s, sse_s = await asyncio.wait_for(asyncio.gather(*readers), 60)
    finally:
        stop = True
        await asyncio.gather(*spinners)
    print(f"\n300-event burst on a busy loop: WebSocket {ws_s:.2f} s, SSE {sse_s:.2f} s")
    assert ws_s < max(1.0, 3 * sse_s), f"WebSocket {ws_s:.2f} s vs SSE {sse_s:.2f} s for the same burst"
