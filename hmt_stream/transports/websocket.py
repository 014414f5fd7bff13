"""WebSocket /ws: JSON text frames; translate, resume and cancel many sessions over one socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from ..session import TranslationSession
from ..translator import Translator
from .rest import translator_of

log = logging.getLogger(__name__)


class Connection:
    """One socket: decodes client messages, runs one forwarding task per session it follows."""

    def __init__(self, ws: web.WebSocketResponse, translator: Translator) -> None:
        self.ws = ws
        self.translator = translator
        self.follows: dict[str, asyncio.Task[None]] = {}

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message, ensure_ascii=False, separators=(",", ":")))

    async def send_error(self, error: HmtError, **context: Any) -> None:
        message: dict[str, Any] = {"type": "error", **error.as_dict(), **context}
        if error.retry_after is not None:
            message["retry_after"] = error.retry_after
        await self.send(message)

    async def receive(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self.send_error(HmtError(errors.BAD_REQUEST, f"not valid JSON: {exc}"))
            return
        try:
            await self._dispatch(message)
        except HmtError as error:
            # Tell the client which of its messages failed: echo its ref and session, when they are plain values.
            context = {key: message[key] for key in ("ref", "session")
                       if isinstance(message, dict) and isinstance(message.get(key), str | int)}
            await self.send_error(error, **context)

    async def _dispatch(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "translate":
            session = self.translator.submit(self.translator.parse(message))
            self.follow(session, 0, message.get("ref"))
        elif kind == "resume":
            after = message.get("after", 0)
            if not isinstance(after, int) or isinstance(after, bool):
                raise HmtError(errors.BAD_REQUEST, "'after' must be an integer seq")
            self.follow(self._session(message), after, None)
        elif kind == "cancel":
            self._session(message).cancel()
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        else:
            raise HmtError(errors.BAD_REQUEST, f"unknown message type {kind!r} "
                                               "(expected translate, resume, cancel or ping)")

    def _session(self, message: dict[str, Any]) -> TranslationSession:
        session_id = message.get("session")
        session = self.translator.store.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise HmtError(errors.NOT_FOUND, f"no session {session_id!r} (unknown or expired)")
        return session

    def follow(self, session: TranslationSession, after: int, ref: Any) -> None:
        previous = self.follows.pop(session.id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._forward(session, after, ref))
        self.follows[session.id] = task
        task.add_done_callback(lambda done: self.follows.get(session.id) is done and self.follows.pop(session.id))

    async def _forward(self, session: TranslationSession, after: int, ref: Any) -> None:
        with contextlib.suppress(ConnectionError):
            async for event in session.events(after=after):
                if ref is not None:
                    # The first event of a new session tells the client which of its requests this is.
                    await self.send({**event.as_dict(), "ref": ref})
                    ref = None
                else:
                    await self.ws.send_str(event.json)

    async def heartbeat(self, interval: float) -> None:
        """An application-level ping that browser code can see (it cannot see WebSocket ping frames)."""
        while not self.ws.closed:
            await asyncio.sleep(interval)
            with contextlib.suppress(ConnectionError):
                await self.send({"type": "ping"})

    async def close(self) -> None:
        tasks = list(self.follows.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def handler(request: web.Request) -> web.WebSocketResponse:
    translator = translator_of(request)
    heartbeat = request.app[SETTINGS].transports.heartbeat_s
    # compress=False: token frames are tiny; deflate would cost CPU per frame and save nothing.
    ws = web.WebSocketResponse(heartbeat=heartbeat, compress=False)
    await ws.prepare(request)
    connection = Connection(ws, translator)
    pinger = asyncio.create_task(connection.heartbeat(heartbeat))
    try:
        await connection.send({"type": "hello", "heartbeat_s": heartbeat})
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await connection.receive(message.data)
            elif message.type == WSMsgType.BINARY:
                await connection.send_error(HmtError(errors.BAD_REQUEST, "binary frames are not accepted; "
                                                                         "send JSON text frames"))
    finally:
        pinger.cancel()
        await connection.close()
    return ws
