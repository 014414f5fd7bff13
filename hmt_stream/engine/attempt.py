"""One request of the remote engine to one inference server: its slot, its response, and reading its stream."""

from __future__ import annotations

import json

import aiohttp

from .router import Endpoint, Router, describe_failure

_decode = json.JSONDecoder().decode


class Failed(Exception):
    """This server failed this request; `down`: it looks unreachable or hung (not just unable to serve it)."""

    def __init__(self, reason: str, *, down: bool) -> None:
        super().__init__(reason)
        self.down = down


class Attempt:
    """One request to one server: its slot in the router and its response, each released exactly once."""

    def __init__(self, router: Router, endpoint: Endpoint) -> None:
        self.router = router
        self.endpoint = endpoint
        self.response: aiohttp.ClientResponse | None = None
        self.deltas = 0
        self.usage_tokens: int | None = None
        self.finished = False  # the server said the answer is complete
        self.drained = False  # and the response was read to its end, so its connection can be used again
        self.read_at = 0.0  # the loop's time when the server last sent something
        self._closed = False

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.deltas

    def close(self) -> None:
        """Free the slot, and the connection: kept for the next request when the answer was read to its end,
        dropped otherwise (a server aborts a request whose client went away)."""
        if self._closed:
            return
        self._closed = True
        if self.response is not None:
            if self.drained:
                self.response.release()
            else:
                self.response.close()
        self.router.release(self.endpoint)

    def time_out(self, timeout_s: float) -> None:
        """End the stream being read: the server has sent nothing for timeout_s."""
        if self.response is not None and not self._closed:
            self.response.content.set_exception(aiohttp.ServerTimeoutError(f"nothing read for {timeout_s:g} s"))

    def read(self, lines: list[bytes]) -> tuple[str, Failed | None]:
        """The text in these SSE lines of the server's stream, and the failure that ended them, if one did: the
        text before an error in the stream was sent, and must not be lost."""
        texts: list[str] = []
        for line in lines:
            try:
                text = self._line(line)
            except Failed as failure:
                return "".join(texts), failure
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not what an OpenAI server sends
                return "".join(texts), Failed(f"unreadable stream: {describe_failure(exc)}", down=False)
            if text is not None:
                texts.append(text)
        return "".join(texts), None

    def _line(self, line: bytes) -> str | None:
        if not line.startswith(b"data:"):
            return None  # blank lines, comments (: ping), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            self.finished = True
            return None
        chunk = _decode(data.decode())
        if "error" in chunk:
            error = chunk["error"]
            raise Failed(f"error in the stream: {error.get('message', error) if isinstance(error, dict) else error}",
                          down=False)
        usage = chunk.get("usage")
        if usage:
            self.usage_tokens = int(usage.get("completion_tokens", 0))
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finished = True
        text = (choice.get("delta") or {}).get("content")
        if text:
            self.deltas += 1
            return str(text)
        return None
