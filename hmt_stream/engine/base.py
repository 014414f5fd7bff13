"""The Engine interface, and the bridge that runs a blocking generation in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GenerationOptions:
    """Sampling options; hashable, because they are part of the phrase cache's key."""

    max_new_tokens: int = 512
    top_k: int = 20  # 0: no top-k
    top_p: float = 0.6
    temperature: float = 0.7  # 0: greedy
    repetition_penalty: float = 1.05
    seed: int | None = None  # the same seed, prompt and options give the same text (with sampling)
    stop: tuple[str, ...] = ()  # strings that end the text, left out of it (see engine/stops.py)


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    """What an engine is asked to continue: chat messages, rendered by the model's own chat template.

    add_generation_prompt opens an assistant turn after the last message (a question to answer);
    continue_final_message instead leaves the final assistant message open, so the model goes on writing it
    (vLLM's flag of the same name: fail-over and adoption continue a partial translation this way)."""

    messages: tuple[Message, ...]
    add_generation_prompt: bool = True
    continue_final_message: bool = False

    @classmethod
    def user(cls, content: str) -> ChatPrompt:
        """One user message, answered: how every translation prompt is sent."""
        return cls((Message("user", content),))

    def continued(self, partial: str) -> ChatPrompt:
        """This prompt with `partial` as the start of the answer, to be continued rather than answered again."""
        if not partial:
            return self
        messages = self.messages
        if self.continue_final_message and messages and messages[-1].role == "assistant":
            messages = (*messages[:-1], Message("assistant", messages[-1].content + partial))
        else:
            messages = (*messages, Message("assistant", partial))
        return ChatPrompt(messages, add_generation_prompt=False, continue_final_message=True)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": message.role, "content": message.content} for message in self.messages]

    @property
    def text(self) -> str:
        """Every message's content, one after another (for logs and scripted engines that read directives)."""
        return "\n".join(message.content for message in self.messages)


class Generation(Protocol):
    """One running generation: async-iterate for text deltas; cancel() stops it within one decode step."""

    tokens: int

    def __aiter__(self) -> AsyncIterator[str]: ...

    def cancel(self) -> None: ...

    async def wait_closed(self) -> None: ...


class WrappedGeneration:
    """A generation passed through: tokens, cancel() and wait_closed() are the inner one's; subclasses change
    what its iteration gives."""

    def __init__(self, inner: Generation) -> None:
        self._inner = inner

    @property
    def tokens(self) -> int:
        return self._inner.tokens

    @tokens.setter
    def tokens(self, value: int) -> None:
        self._inner.tokens = value

    def __aiter__(self) -> AsyncIterator[str]:
        return self._inner.__aiter__()

    def cancel(self) -> None:
        self._inner.cancel()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()


class Engine(Protocol):
    model_id: str
    demo: bool

    def prompt_tokens(self, prompt: ChatPrompt) -> int: ...

    def generate(self, prompt: ChatPrompt, options: GenerationOptions) -> Generation: ...

    async def warmup(self) -> None: ...

    async def close(self) -> None: ...


_END = object()


class BridgedGeneration:
    """A generation produced in another thread: the producer calls emit() per delta and end() once, and stops
    when stop_requested is set; the event loop reads the deltas by async iteration."""

    def __init__(self) -> None:
        self.tokens = 0
        self.stop_requested = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._error: BaseException | None = None

    # -- producer thread side --------------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        if text:
            self._post(text)

    def end(self, error: BaseException | None = None) -> None:
        """The last call: the reader stops after the deltas so far, raising `error` if one is given."""
        self._error = error
        self._post(_END)

    def _post(self, item: object) -> None:
        self._call(self._queue.put_nowait, item)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop has closed (shutdown); nobody is left to read
            self.stop_requested.set()

    # -- event loop side -------------------------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            assert isinstance(item, str)
            yield item

    def cancel(self) -> None:
        self.stop_requested.set()


class ThreadedGeneration(BridgedGeneration):
    """Runs `produce(self)` in an executor; the producer calls emit() per delta and polls stop_requested."""

    def __init__(self, executor: Executor, produce: Callable[[ThreadedGeneration], None]) -> None:
        super().__init__()
        self._done = self._loop.run_in_executor(executor, self._run, produce)

    def _run(self, produce: Callable[[ThreadedGeneration], None]) -> None:
        error: BaseException | None = None
        try:
            produce(self)
        except BaseException as exc:  # handed to the reader, which re-raises it on the loop
            error = exc
        finally:
            self.end(error)

    async def wait_closed(self) -> None:
        """Wait until the worker thread has returned, so its slot is really free."""
        await asyncio.shield(self._done)
