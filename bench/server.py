"""The server under test, in a process of its own, so that its CPU time and memory are its own.

It is hmt-stream's real application, run the way `serve` runs it (INFO logging with aiohttp's access log,
handler_cancellation), over the ScriptedEngine (not a model: tokens at a scripted rate) or the demo model, plus two
routes that only the benchmark uses:

- `POST /bench/direct` starts sessions through the Translator and reads them in this process, with no transport:
  the baseline that each transport is compared with.
- `GET /bench/engine-times` tells, per request marker, when the engine was asked to generate and when its first
  delta came out (demo model only).
- `GET /bench/gc` tells how many garbage collections ran since the last call and how long the longest paused the
  event loop (a full collection of a heap with many sessions can take 100 ms).

    python -m bench.server --engine scripted|demo|remote [--gc default|tuned] [--set section.key=value ...]

`--gc tuned` is what `serve` does by default (server.gc_tuning): after start-up it freezes the heap so far
(gc.freeze()) and collects less often (gc.set_threshold(50_000, 20, 100)); `--gc default` is Python's own.

It prints `READY <port>` once it listens on 127.0.0.1, and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import re
import resource
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from hmt_stream.app import create_app
from hmt_stream.cli import tune_gc
from hmt_stream.config import Settings
from hmt_stream.engine import ChatPrompt, Engine, Generation, GenerationOptions
from hmt_stream.engine.base import WrappedGeneration
from hmt_stream.engine.scripted import ScriptedEngine, stamps
from hmt_stream.keys import TRANSLATOR
from hmt_stream.request import TranslationRequest
from hmt_stream.session import TranslationSession

from .harness import serve_until_stdin_closes

MARKER = re.compile(r"\breq-(\w+)")

# The server settings every benchmark starts from: no admission or rate limit to hit, sessions kept briefly.
# A setting this version of the server does not have is left out (see known()).
BASE_SETTINGS: dict[str, Any] = {
    "scheduler.max_concurrent": 20000,
    "scheduler.max_queue": 20000,
    "session.retention_s": 30.0,
    "model.warmup": False,
    "limits.rate": "1000000/second",
    "auth.enabled": False,
    # Every benchmark client is one address: no per-client caps.
    "scheduler.max_per_client": 0,
    "limits.max_websockets_per_client": 1000000,
    "limits.max_readers_per_client": 1000000,
    "limits.max_follows_per_socket": 1000000,
    "limits.ws_messages_per_s": 1000000.0,
    "limits.refusal_rate": "1000000/second",
}


def known(key: str) -> bool:
    section, _, name = key.partition(".")
    return hasattr(getattr(Settings(), section, None), name)


def raise_file_limit() -> None:
    """Thousands of sockets need thousands of descriptors: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class TimedGeneration(WrappedGeneration):
    def __init__(self, inner: Generation, times: list[int]) -> None:
        super().__init__(inner)
        self._times = times

    async def __aiter__(self) -> AsyncIterator[str]:
        first = True
        async for text in self._inner:
            if first:
                # When, and after how many tokens: the decoder holds text back until a character is complete.
                self._times += [time.monotonic_ns(), self._inner.tokens]
                first = False
            yield text


class TimedEngine:
    """Wraps an engine; notes, per request marker (`req-<id>` in the text), when generate() was called, when the
    first delta left the generation and how many tokens it had made by then."""

    def __init__(self, inner: Engine) -> None:
        self._inner = inner
        self.model_id = inner.model_id
        self.demo = inner.demo
        self.device = getattr(inner, "device", "?")
        self.times: dict[str, list[int]] = {}

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        return self._inner.prompt_tokens(prompt)

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> Generation:
        times = [time.monotonic_ns()]
        match = MARKER.search(prompt.text)
        if match:
            self.times[match.group(1)] = times
        return TimedGeneration(self._inner.generate(prompt, options), times)

    async def warmup(self) -> None:
        await self._inner.warmup()

    async def close(self) -> None:
        await self._inner.close()


async def _read_directly(session: TranslationSession, record: dict[str, Any]) -> None:
    """A reader with no transport: what each delta costs before any byte is written to a socket."""
    recv: list[int] = record["recv"]
    produced: list[int] = record["stamps"]
    async for event in session.events():
        if event.type == "delta":
            now = time.monotonic_ns()
            if record["first"] is None:
                record["first"] = now
            for stamp in stamps(event.data["text"]):
                recv.append(now)
                produced.append(stamp)
        elif event.terminal:
            record["terminal"] = event.type
            record["end"] = time.monotonic_ns()


async def direct(request: web.Request) -> web.Response:
    """Start `streams` sessions (stream i after i * stagger_s / streams seconds) and read them here."""
    body = await request.json()
    translator = request.app[TRANSLATOR]
    streams, stagger = int(body["streams"]), float(body.get("stagger_s", 0.0))
    loop = asyncio.get_running_loop()
    began = loop.time()
    records: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, began + i * stagger / streams - loop.time()))
        record: dict[str, Any] = {"start": time.monotonic_ns(), "first": None, "recv": [], "stamps": [],
                                  "terminal": None, "end": None, "error": None}
        records.append(record)
        text = body["text"].replace("{i}", str(i))
        session = translator.submit(TranslationRequest(text=text, source="en", target="fr"))
        await _read_directly(session, record)

    await asyncio.gather(*(one(i) for i in range(streams)))
    return web.json_response({"streams": records})


TIMED = web.AppKey("bench_timed_engine", TimedEngine)


class GcPauses:
    """Times every garbage collection (gc.callbacks): how often, and how long each held the event loop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def take(self) -> dict[str, Any]:
        """What ran since the last take()."""
        pauses, self.pauses = self.pauses, []
        return {"collections": len(pauses), "full": sum(1 for generation, _ in pauses if generation == 2),
                "longest_ms": round(max((pause for _, pause in pauses), default=0.0) * 1000, 1),
                "total_ms": round(sum(pause for _, pause in pauses) * 1000, 1)}


GC = web.AppKey("bench_gc", GcPauses)


async def gc_pauses(request: web.Request) -> web.Response:
    return web.json_response(request.app[GC].take())


async def engine_times(request: web.Request) -> web.Response:
    engine = request.app.get(TIMED)
    return web.json_response(engine.times if engine is not None else {})


def build_engine(kind: str, settings: Settings) -> Engine:
    if kind == "scripted":
        return ScriptedEngine()
    if kind == "remote":  # remote.endpoints names the backend (bench/remote.py)
        from hmt_stream.engine import load_engine

        return load_engine(settings)
    from hmt_stream.engine.demo import build_demo_model
    from hmt_stream.engine.transformers import TransformersEngine

    path = build_demo_model(settings.model.demo_dir)
    return TransformersEngine.load(str(path), model_id="demo", demo=True, device="cpu",
                                   workers=max(settings.generation.workers, settings.scheduler.max_concurrent))


async def serve(args: argparse.Namespace) -> None:
    overrides = {key: value for key, value in BASE_SETTINGS.items() if known(key)}
    if args.engine in ("demo", "remote"):
        overrides["model.demo_dir"] = f"{tempfile.gettempdir()}/hmt-bench-demo-model"
        overrides["scheduler.max_concurrent"] = 4
    for pair in args.set:
        key, _, value = pair.partition("=")
        overrides[key] = json.loads(value)
    settings = Settings().replace(overrides)
    engine = build_engine(args.engine, settings)
    timed = TimedEngine(engine) if args.engine == "demo" else None
    app = create_app(settings, engine=timed or engine)
    if timed is not None:
        app[TIMED] = timed
    app.router.add_post("/bench/direct", direct)
    app.router.add_get("/bench/engine-times", engine_times)
    if args.engine == "remote":
        from .remote import add_routes

        add_routes(app, settings)
    app[GC] = GcPauses()
    app.router.add_get("/bench/gc", gc_pauses)
    if args.gc == "tuned":
        tune_gc()  # what `serve` does with server.gc_tuning = true, its default
    await serve_until_stdin_closes(web.AppRunner(app, handler_cancellation=True))
    await engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--engine", choices=("scripted", "demo", "remote"), default="scripted")
    parser.add_argument("--gc", choices=("default", "tuned"), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON")
    args = parser.parse_args(argv)
    raise_file_limit()
    # As `serve` does: INFO logging, so aiohttp's access log writes a line per request (to our stderr file).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
