"""ScriptedEngine: NOT a model. A stand-in engine that emits scripted tokens, for benchmarks and fault injection.

It implements the Engine protocol of `base.py` with plain asyncio, no thread: each generation emits tokens at a
fixed rate, after an optional "prefill" delay, and can be told to fail or hang after N tokens, or to take its
time stopping once cancelled. Nothing it emits is a translation, and its `demo` flag is set so that anything
showing its output says so.

Behaviour comes from a `Script`: one for every prompt, a function of the prompt, or (unless turned off) a
directive inside the text itself, so that a client of a running server picks the behaviour per request:

    [[script tokens=50 rate=20 fail_after=3]]

The directive's keys are `Script`'s fields; see `Script.directive()`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .base import ChatPrompt, GenerationOptions

_DIRECTIVE = re.compile(r"\[\[script((?:\s+\w+=[^\s\]]*)*)\s*\]\]")
_STAMP = re.compile(r"\[t=(\d+)\]")


class ScriptedFailure(RuntimeError):
    """The failure a script asked for (fail_after, or a warm-up that fails)."""


@dataclass(frozen=True)
class Script:
    """What one scripted generation does."""

    tokens: int = 16  # tokens emitted before it ends normally (capped by options.max_new_tokens)
    rate: float = 0.0  # tokens per second; 0 emits them back to back, one event-loop turn apart
    first_token_s: float = 0.0  # extra delay before the first token, like a prefill
    text: str = "tok "  # each token's text; "{i}" is replaced by the token's index (from 0)
    stamp: bool = False  # prefix each token with its production time "[t=<time.monotonic_ns()>]"
    fail_after: int = -1  # raise ScriptedFailure after this many tokens (0: before the first); -1: never
    hang_after: int = -1  # after this many tokens, emit nothing more until cancelled; -1: never
    stop_delay_s: float = 0.0  # how long it takes to stop once cancelled (a slow decode step)

    def directive(self) -> str:
        """This script as a directive to put in a request's text, naming only what differs from the defaults."""
        defaults = Script()
        parts = [f"{f.name}={_format(getattr(self, f.name))}" for f in dataclasses.fields(self)
                 if getattr(self, f.name) != getattr(defaults, f.name)]
        return "[[script" + "".join(" " + part for part in parts) + "]]"

    @classmethod
    def from_directive(cls, prompt: str, base: Script | None = None) -> Script | None:
        """The script named by the first `[[script k=v ...]]` in prompt (over `base`), or None without one."""
        match = _DIRECTIVE.search(prompt)
        if match is None:
            return None
        script = base or cls()
        types = {f.name: type(getattr(script, f.name)) for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for pair in match.group(1).split():
            key, _, value = pair.partition("=")
            if key not in types:
                raise ValueError(f"unknown script key {key!r} (known: {', '.join(types)})")
            kind = types[key]
            if kind is bool:
                changes[key] = value.lower() in ("1", "true", "yes", "on")
            elif kind is str:
                changes[key] = value.replace("_", " ")
            else:
                changes[key] = kind(value)
        return dataclasses.replace(script, **changes)


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value.replace(" ", "_")
    return str(value)


def stamps(text: str) -> list[int]:
    """The production times (time.monotonic_ns()) carried by stamped tokens in text."""
    return [int(value) for value in _STAMP.findall(text)]


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class ScriptedGeneration:
    """One scripted generation. Its reader drives it: each token is made when it is due and the reader is there
    to take it (a late reader gets the overdue tokens at once), which costs the event loop one timer per token."""

    def __init__(self, script: Script, max_new_tokens: int, *, broken: str = "") -> None:
        self.script = script
        self.broken = broken  # why the script could not be read; the generation fails with it at once
        self.limit = min(script.tokens, max_new_tokens)
        self.tokens = 0
        self.cancelled = False
        self.started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._start = loop.time() + script.first_token_s  # token i is due at _start + i / rate
        self._stopped = asyncio.Event()
        self._wake: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = loop.create_future()
        self._read = False

    async def _pause(self, seconds: float) -> bool:
        """Sleep, or wake at once when cancel() is called meanwhile; True once cancelled."""
        if seconds <= 0 or self.cancelled:
            await asyncio.sleep(0)
            return self.cancelled
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        timer = loop.call_later(seconds, _wake, self._wake)
        try:
            await self._wake
        finally:
            timer.cancel()
        return self.cancelled

    async def __aiter__(self) -> AsyncIterator[str]:
        if self._read:
            raise RuntimeError("a generation is read once")
        self._read = True
        script = self.script
        interval = 1.0 / script.rate if script.rate > 0 else 0.0
        templated = "{i}" in script.text
        loop = asyncio.get_running_loop()
        try:
            for i in range(self.limit + 1):
                if self.broken:
                    raise ScriptedFailure(self.broken)
                if i == script.fail_after:
                    raise ScriptedFailure(f"scripted failure after {i} tokens")
                if i == script.hang_after:
                    await self._stopped.wait()
                    return
                # Due times are absolute, so one late wake-up does not push every later token back.
                if i == self.limit or await self._pause(self._start + i * interval - loop.time()):
                    return
                text = script.text.replace("{i}", str(i)) if templated else script.text
                if script.stamp:
                    text = f"[t={time.monotonic_ns()}]{text}"
                self.tokens += 1
                yield text
        finally:
            if not self.cancelled:
                _wake(self._closed)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._stopped.set()
        _wake(self._wake)
        if self.script.stop_delay_s > 0 and not self._closed.done():
            asyncio.get_running_loop().call_later(self.script.stop_delay_s, _wake, self._closed)
        else:
            _wake(self._closed)

    @property
    def done(self) -> bool:
        """It has stopped: read to its end (or its failure), or cancelled and stop_delay_s has passed."""
        return self._closed.done()

    async def wait_closed(self) -> None:
        """Wait until it has stopped (stop_delay_s after a cancel)."""
        await asyncio.shield(self._closed)


class ScriptedEngine:
    """NOT a model: an Engine that emits scripted tokens (benchmarks, fault injection). See the module docstring.

    script: the Script for every prompt, or a function from the prompt to its Script.
    directives: let a `[[script ...]]` directive in the prompt override that script.
    chars_per_token: prompt_tokens() is the prompt's length in characters divided by this, rounded up.
    """

    def __init__(self, script: Script | Callable[[str], Script] = Script(), *, directives: bool = True,
                 model_id: str = "scripted", warmup_s: float = 0.0, fail_warmup: bool = False,
                 chars_per_token: float = 4.0, history: int = 1000) -> None:
        self.model_id = model_id
        self.demo = True  # its output is not a translation: say so wherever the demo flag shows
        self.device = "scripted"
        self._script = script
        self.directives = directives
        self.warmup_s = warmup_s
        self.fail_warmup = fail_warmup
        self.chars_per_token = chars_per_token
        self.prompts: collections.deque[str] = collections.deque(maxlen=history)
        self.generations: collections.deque[ScriptedGeneration] = collections.deque(maxlen=history)
        self.started = 0
        self.closed = False
        self._live: set[ScriptedGeneration] = set()

    def script_for(self, prompt: str) -> Script:
        script = self._script(prompt) if callable(self._script) else self._script
        if self.directives:
            return Script.from_directive(prompt, script) or script
        return script

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        return math.ceil(len(prompt.text) / self.chars_per_token)

    def generate(self, chat: ChatPrompt, options: GenerationOptions) -> ScriptedGeneration:
        prompt = chat.text
        try:
            generation = ScriptedGeneration(self.script_for(prompt), options.max_new_tokens)
        except ValueError as exc:  # a bad directive fails this generation, as a model error would
            generation = ScriptedGeneration(Script(), 0, broken=f"bad script directive: {exc}")
        self.started += 1
        self.prompts.append(prompt)
        self.generations.append(generation)
        self._live.add(generation)
        generation._closed.add_done_callback(lambda _: self._live.discard(generation))
        return generation

    @property
    def running(self) -> int:
        """Generations whose producer has not stopped yet."""
        return sum(not generation.done for generation in self._live)

    async def warmup(self) -> None:
        if self.warmup_s > 0:
            await asyncio.sleep(self.warmup_s)
        if self.fail_warmup:
            raise ScriptedFailure("scripted warm-up failure")

    async def close(self) -> None:
        self.closed = True
        live = list(self._live)
        for generation in live:
            generation.cancel()
        await asyncio.gather(*(generation.wait_closed() for generation in live), return_exceptions=True)
