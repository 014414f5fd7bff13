"""RemoteEngine: generation on OpenAI-compatible servers (vLLM, SGLang, llama.cpp, another hmt-stream).

The prompt is built here as for the local engine and sent as chat messages with `stream`, `max_tokens`, `top_k`,
`repetition_penalty` and `stream_options.include_usage`. A server that cannot be reached, answers 5xx, 408 or 429,
or says nothing for `remote.timeout_s` before the first token is left for another, unseen by the reader. (Silence
in a stream is found by one sweep over every stream being read, a few times per timeout, not by aiohttp's read
timeout, which re-arms a timer for every packet: on a gateway that forwards thousands of tokens a second, that
timer cost about 8 µs of the 49 µs of CPU the gateway added per token, docs/benchmarks.md §6.) One that
fails mid-stream is left too, and the generation goes on elsewhere from the text already given: that text becomes
the final assistant message, continued (`continue_final_message`), so the reader sees a pause and nothing lost or
repeated. When no server is left the generation fails with `engine_unavailable`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp

from .. import errors
from ..config import Settings
from ..errors import HmtError, ModelLoadError
from .attempt import Attempt, Failed
from .base import ChatPrompt, GenerationOptions
from .demo import build_demo_model, is_demo_checkpoint
from .router import Endpoint, Router, describe_failure
from .transformers import encode_prompt, load_tokenizer

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 429}  # and every 5xx: the server is busy or broken, another may not be
_JSON = {"Content-Type": "application/json"}


class RemoteGeneration:
    def __init__(self, engine: RemoteEngine, prompt: ChatPrompt, options: GenerationOptions) -> None:
        self.tokens = 0
        self._engine = engine
        self._prompt = prompt
        self._options = options
        self._attempt: Attempt | None = None
        self._cancelled = False
        self._closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[str]:
        engine = self._engine
        router = engine.router
        given = ""  # the text handed to the reader so far
        tried: set[Endpoint] = set()
        failures: list[str] = []
        try:
            while not self._cancelled:
                budget = self._options.max_new_tokens - self.tokens
                if budget <= 0:
                    return
                endpoint = await router.acquire(tried, engine.timeout_s)
                if endpoint is None:
                    raise HmtError(errors.ENGINE_UNAVAILABLE, "no inference server could take the request"
                                   + (f" ({'; '.join(failures[-3:])})" if failures else
                                      f": {router.healthy} of {len(router.endpoints)} healthy, all busy or tried"))
                tried.add(endpoint)
                self._attempt = attempt = Attempt(router, endpoint)
                stream = self._stream(attempt, self._prompt.continued(given), budget)
                try:
                    async for text in stream:
                        given += text
                        yield text
                    return
                except Failed as failure:
                    if self._cancelled:
                        return
                    endpoint.failures += 1
                    failures.append(f"{endpoint.url}: {failure}")
                    if failure.down:
                        router.mark(endpoint, False, str(failure))
                    if attempt.deltas:
                        endpoint.failovers += 1
                        tried = {endpoint}  # progress was made: the others may be tried again
                    log.warning("inference server %s failed %s: %s; going on elsewhere", endpoint.url,
                                "mid-stream" if attempt.deltas else "before the first token", failure)
                finally:
                    self.tokens += attempt.tokens
                    endpoint.tokens += attempt.tokens
                    attempt.close()
                    await stream.aclose()
        finally:
            self._closed.set()

    async def _stream(self, attempt: Attempt, prompt: ChatPrompt, budget: int) -> AsyncGenerator[str, None]:
        engine = self._engine
        body = engine.body(prompt, dataclasses.replace(self._options, max_new_tokens=budget))
        url = attempt.endpoint.url + "/chat/completions"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(engine.timeout_s):
                attempt.response = response = await engine.http.post(url, data=body, headers=_JSON)
            if response.status != 200:
                answer = (await response.text())[:300]
                if response.status >= 500 or response.status in RETRY_STATUSES:
                    raise Failed(f"HTTP {response.status}: {answer}", down=False)
                raise HmtError(errors.MODEL_ERROR, f"the inference server {attempt.endpoint.url} refused the "
                                                   f"request: HTTP {response.status}: {answer}")
            # Whatever has arrived, split into lines here: one read per network packet rather than two readline()
            # calls per chunk (a line and the blank one after it), and the deltas of one packet as one.
            pending = b""
            attempt.read_at = loop.time()
            engine.reading.add(attempt)
            async for block in response.content.iter_any():
                attempt.read_at = loop.time()
                *lines, pending = (pending + block).split(b"\n")
                text, failure = attempt.read(lines)
                if text:
                    yield text
                if failure is not None:
                    raise failure
            attempt.drained = attempt.finished
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Failed(describe_failure(exc), down=True) from None
        finally:
            engine.reading.discard(attempt)
        if not attempt.finished:
            raise Failed("the stream ended before the answer did", down=True)

    def cancel(self) -> None:
        """Close the server's stream now, whether or not the reader is waiting on it."""
        self._cancelled = True
        if self._attempt is not None:
            self._attempt.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class RemoteEngine:
    """An Engine over OpenAI-compatible servers; the tokenizer is local, to count and limit prompt tokens."""

    def __init__(self, router: Router, tokenizer: Any, *, model: str, model_id: str, demo: bool, api_key: str = "",
                 timeout_s: float = 30.0, health_interval_s: float = 5.0) -> None:
        self.router = router
        self.endpoints = router.endpoints
        self.model = model
        self.model_id = model_id
        self.demo = demo
        self.device = f"remote ({len(router.endpoints)} servers)"
        self.timeout_s = timeout_s
        self.health_interval_s = health_interval_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}  # health probes carry it too
        self._prompt_ids = functools.lru_cache(maxsize=256)(functools.partial(encode_prompt, tokenizer))
        self._http: aiohttp.ClientSession | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stalls: asyncio.Task[None] | None = None
        self._live: weakref.WeakSet[RemoteGeneration] = weakref.WeakSet()
        self.reading: set[Attempt] = set()  # the streams being read, for the sweep that finds silent ones

    @classmethod
    def load(cls, settings: Settings) -> RemoteEngine:
        """Loads the tokenizer of model.name (blocking); a failure says what to do."""
        m, r = settings.model, settings.remote
        path = str(build_demo_model(m.demo_dir)) if m.name == "demo" else m.name
        try:
            tokenizer = load_tokenizer(path, model_id=m.name, revision=m.revision,
                                       local_files_only=m.local_files_only)
        except ModelLoadError as exc:
            raise ModelLoadError(f"with remote.endpoints the tokenizer of model.name is still needed, to count "
                                 f"prompt tokens for generation.max_input_tokens: {exc}") from exc
        return cls(Router(r.endpoints, r.max_concurrent), tokenizer, model=r.model or m.name,
                   model_id=r.model or m.name, demo=m.name == "demo" or is_demo_checkpoint(path),
                   api_key=r.api_key, timeout_s=r.timeout_s, health_interval_s=r.health_interval_s)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("RemoteEngine.start() was not called")
        return self._http

    def health(self) -> list[dict[str, Any]]:
        return [endpoint.describe() for endpoint in self.endpoints]

    async def start(self) -> None:
        """Open the client, check every server once, and keep checking them in the background."""
        if self._http is not None:
            return
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s)  # silence: _sweep_silent()
        self._http = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0),
                                           headers=self.headers)
        probe_timeout = min(self.timeout_s, max(1.0, self.health_interval_s))
        await self.router.check(self._http, probe_timeout)
        self._watch = asyncio.create_task(self.router.watch(self._http, self.health_interval_s, probe_timeout),
                                          name="remote-health")
        self._stalls = asyncio.create_task(self._sweep_silent(), name="remote-silence")

    async def _sweep_silent(self) -> None:
        """Every quarter of timeout_s (at most a second), end the streams whose server has sent nothing for
        timeout_s: a silent server is found within 1.25 timeouts."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 4))
            since = loop.time() - self.timeout_s
            for attempt in [attempt for attempt in self.reading if attempt.read_at < since]:
                attempt.time_out(self.timeout_s)

    def prompt_tokens(self, prompt: ChatPrompt) -> int:
        return len(self._prompt_ids(prompt))

    def body(self, prompt: ChatPrompt, options: GenerationOptions) -> bytes:
        body: dict[str, Any] = {
            "model": self.model, "messages": prompt.as_dicts(), "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": options.max_new_tokens,
            "temperature": options.temperature, "top_p": options.top_p,
            "top_k": options.top_k if options.top_k > 0 else -1, "repetition_penalty": options.repetition_penalty,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = list(options.stop)
        if prompt.continue_final_message or not prompt.add_generation_prompt:
            # vLLM's and SGLang's names; llama.cpp continues a final assistant message by itself.
            body["add_generation_prompt"] = prompt.add_generation_prompt
            body["continue_final_message"] = prompt.continue_final_message
        return json.dumps(body, ensure_ascii=False).encode()

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> RemoteGeneration:
        generation = RemoteGeneration(self, prompt, options)
        self._live.add(generation)
        return generation

    async def warmup(self) -> None:
        await self.start()

    async def close(self) -> None:
        for task in (self._watch, self._stalls):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for generation in list(self._live):
            generation.cancel()
        if self._http is not None:
            await self._http.close()
