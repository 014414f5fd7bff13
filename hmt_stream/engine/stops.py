"""Stop strings and finish reasons, the same for every engine: local models and remote servers alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .base import Generation, GenerationOptions, WrappedGeneration


class StopStrings(WrappedGeneration):
    """A generation cut at the first of `stops` in its text, which is left out (OpenAI's `stop`).

    Applied here rather than in each engine, so a local model, a batched one and a remote server stop on the same
    characters; remote servers get `stop` too, and then simply end first. Text that could be the start of a stop
    string is held back until the next delta shows whether it is one; deltas still never split a character."""

    def __init__(self, inner: Generation, stops: tuple[str, ...]) -> None:
        super().__init__(inner)
        self._stops = tuple(stop for stop in stops if stop)
        self._longest = max((len(stop) for stop in self._stops), default=0)
        self.matched = False

    def _first_stop(self, text: str) -> int:
        found = [index for stop in self._stops if (index := text.find(stop)) >= 0]
        return min(found, default=-1)

    def _undecided(self, text: str) -> int:
        """How many characters at the end of text could still grow into a stop string."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0

    async def __aiter__(self) -> AsyncIterator[str]:
        held = ""
        async for text in self._inner:
            held += text
            cut = self._first_stop(held)
            if cut >= 0:
                self.matched = True
                self._inner.cancel()
                await self._inner.wait_closed()
                if cut:
                    yield held[:cut]
                return
            keep = self._undecided(held)
            if len(held) > keep:
                ready, held = held[:len(held) - keep], held[len(held) - keep:]
                yield ready
        if held:
            yield held


def with_stops(generation: Generation, options: GenerationOptions) -> Generation:
    return StopStrings(generation, options.stop) if any(options.stop) else generation


def finish_reason(generation: Generation, options: GenerationOptions) -> str:
    """OpenAI's finish_reason: `length` when the token budget ran out, else `stop` (end of text or a stop string)."""
    if isinstance(generation, StopStrings) and generation.matched:
        return "stop"
    return "length" if generation.tokens >= options.max_new_tokens else "stop"
