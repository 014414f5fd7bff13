"""WebSocket /ws: JSON text frames; translate, resume and cancel many sessions over one socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from .. import errors, wirejson
from ..auth import Principal
from ..config import LimitSettings
from ..errors import HmtError
from ..keys import METRICS, SETTINGS
from ..metrics import Metrics
from ..session import TranslationSession
from ..translator import Translator
from .guard import principal_of
from .limits import WEBSOCKETS, MessageBudget, hold
from .rest import translator_of

log = logging.getLogger(__name__)

# The close code for a socket whose token expired (4000-4999 are the application's; 4401 echoes HTTP 401): the
# page signs in again and resumes its sessions on a new socket.
TOKEN_EXPIRED = 4401
# Messages that ask for something; pings and pongs do not keep a socket from counting as idle.
REQUESTS = ("translate", "resume", "cancel")


class Connection:
    """One socket: decodes client messages, runs one forwarding task per session it follows."""

    def __init__(self, ws: web.WebSocketResponse, translator: Translator, principal: Principal, metrics: Metrics,
                 *, send_timeout: float = 30.0, abort: Callable[[], None] = lambda: None,
                 max_follows: int = 1_000_000) -> None:
        self.ws = ws
        self.max_follows = max_follows
        self.metrics = metrics
        self.send_timeout = send_timeout
        self._abort = abort
        self.translator = translator
        self.principal = principal
        self.owner = principal.id if principal.authenticated else None
        self.follows: dict[str, asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()  # finish() asks the handler to close the socket
        self.ended = asyncio.Event()  # the handler has returned

    async def send(self, message: dict[str, Any]) -> None:
        # ASCII-escaped: these messages may echo client values (a ref), which JSON lets hold lone surrogates.
        await self.send_text(json.dumps(message, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        """Send one frame; a reader that accepts nothing for send_timeout is dropped (its sessions carry on)."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps each frame in a task of its own, which
            # costs every frame a turn of the event loop (seconds behind on a busy server).
            async with asyncio.timeout(self.send_timeout):
                await self.ws.send_str(text)
        except TimeoutError:
            log.info("dropping a WebSocket that accepted nothing for %.0f s", self.send_timeout)
            self._abort()
            raise ConnectionResetError("slow reader dropped") from None

    @property
    def busy(self) -> bool:
        """True while the socket follows a session that has not ended."""
        return bool(self.follows)

    async def send_error(self, error: HmtError, **context: Any) -> None:
        self.metrics.error(error.code)
        message: dict[str, Any] = {"type": "error", **error.as_dict(), **context}
        if error.retry_after is not None:
            message["retry_after"] = error.retry_after
        await self.send(message)

    async def receive(self, raw: str) -> bool:
        """Serve one message; True when it asked for something (not a ping or pong, nor garbage)."""
        try:
            message = wirejson.loads(raw)
        except HmtError as error:
            await self.send_error(error)
            return False
        kind = message.get("type") if isinstance(message, dict) else None
        try:
            await self._dispatch(message)
        except HmtError as error:
            # Tell the client which of its messages failed: echo its ref and session, when they are plain values.
            context = {key: message[key] for key in ("ref", "session")
                       if isinstance(message, dict) and isinstance(message.get(key), str | int)}
            await self.send_error(error, **context)
        return kind in REQUESTS

    def _check_room(self, session_id: Any = None) -> None:
        if len(self.follows) >= self.max_follows and session_id not in self.follows:
            raise HmtError(errors.TOO_MANY_STREAMS, f"this socket already follows {len(self.follows)} sessions, "
                                                    f"the most it may; wait for one to end")

    async def _dispatch(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in ("translate", "resume"):
            self._check_room(message.get("session"))
        if kind == "translate":
            session = await self.translator.start(self.translator.parse(message), principal=self.principal.id,
                                                  owner=self.owner)
            self.follow(session, 0, message.get("ref"))
        elif kind == "resume":
            after = message.get("after", 0)
            if not isinstance(after, int) or isinstance(after, bool):
                raise HmtError(errors.BAD_REQUEST, "'after' must be an integer seq")
            self.follow(await self._session(message), after, None)
        elif kind == "cancel":
            (await self._session(message)).cancel()
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        else:
            raise HmtError(errors.BAD_REQUEST, f"unknown message type {kind!r} "
                                               "(expected translate, resume, cancel or ping)")

    async def _session(self, message: dict[str, Any]) -> TranslationSession:
        session_id = message.get("session")
        session = await self.translator.locate(session_id, self.owner) if isinstance(session_id, str) else None
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
        try:
            await self._send_events(session, after, ref)
        except ConnectionError:
            pass  # the socket is gone; the session carries on for a resume
        except Exception:
            log.exception("forwarding session %s to a WebSocket failed", session.id)
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")

    async def _send_events(self, session: TranslationSession, after: int, ref: Any) -> None:
        async for event in session.events(after=after):
            if ref is not None:
                # The first event of a new session tells the client which of its requests this is.
                await self.send({**event.as_dict(), "ref": ref})
                ref = None
            else:
                await self.send_text(event.json)

    async def heartbeat(self, interval: float) -> None:
        """An application-level ping that browser code can see (it cannot see WebSocket ping frames)."""
        while not self.ws.closed:
            await asyncio.sleep(interval)
            with contextlib.suppress(ConnectionError):
                await self.send({"type": "ping"})

    async def next_message(self, idle_timeout: float) -> WSMessage | None:
        """The client's next message; None after idle_timeout, or at once when finish() asks the socket to stop."""
        receiving = asyncio.ensure_future(self.ws.receive())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({receiving, stopping}, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if receiving.done():
            return receiving.result()
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
        return None

    async def finish(self, timeout: float = 5.0) -> None:
        """Deliver the events still due (the sessions have ended), then have the handler close with 1001.
        The handler closes its own socket: a close from another task, while the handler is reading, would let
        the handler return (and the connection end) before the close frame is written."""
        if self.follows:
            await asyncio.wait(list(self.follows.values()), timeout=timeout)
        self.stopping.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout + 10):
                await self.ended.wait()

    async def close(self) -> None:
        tasks = list(self.follows.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


CONNECTIONS = web.AppKey("ws_connections", set["Connection"])


async def handler(request: web.Request) -> web.WebSocketResponse:
    translator = translator_of(request)
    with hold(request, WEBSOCKETS):  # one socket over the client's cap is refused (429) before the upgrade
        return await _open(request, translator)


async def _open(request: web.Request, translator: Translator) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    heartbeat = settings.transports.heartbeat_s
    limits = settings.limits
    # compress=False: token frames are tiny; deflate would cost CPU per frame and save nothing.
    # max_msg_size: a larger message closes the socket with 1009 (its frame cannot be skipped and read on).
    ws = web.WebSocketResponse(heartbeat=heartbeat, compress=False, max_msg_size=limits.max_ws_frame_bytes)
    await ws.prepare(request)
    transport = request.transport
    connection = Connection(ws, translator, principal_of(request), request.app[METRICS],
                            send_timeout=limits.slow_reader_timeout_s,
                            abort=transport.abort if transport is not None else lambda: None,
                            max_follows=limits.max_follows_per_socket)
    connections = request.app[CONNECTIONS]
    connections.add(connection)
    pinger = asyncio.create_task(connection.heartbeat(heartbeat))
    try:
        await connection.send({"type": "hello", "heartbeat_s": heartbeat})
        await _serve(connection, limits)
    except ConnectionError:
        pass  # the peer went away mid-write; its sessions carry on for resume
    finally:
        connections.discard(connection)
        pinger.cancel()
        await connection.close()
        connection.ended.set()
    return ws


async def stop_protocol_pings(app: web.Application) -> None:
    """First on shutdown, before the drain. Once stopping, aiohttp drops whatever arrives on an open connection
    (Server.pre_shutdown), the client's pongs included, so its heartbeat would close each socket (1006) half a
    heartbeat after its next ping, in the middle of the events still due. aiohttp has no public switch for it."""
    for connection in app[CONNECTIONS]:
        connection.ws._heartbeat = None
        connection.ws._cancel_heartbeat()


async def _serve(connection: Connection, limits: LimitSettings) -> None:
    """Serve the client's messages until it leaves, stays idle, floods the socket, its token expires, or the
    server stops (finish())."""
    ws = connection.ws
    budget = MessageBudget(limits.ws_messages_per_s)
    expires = connection.principal.expires
    active = time.monotonic()  # the last request, or the last moment the socket followed a running session
    while not ws.closed:
        wait = active + limits.ws_idle_timeout_s - time.monotonic()
        if expires is not None:
            wait = min(wait, expires - time.time())
        message = await connection.next_message(max(wait, 0.0))
        if message is None:  # the server is stopping, the token expired, or time to check for idleness
            if connection.stopping.is_set():
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                return
            if expires is not None and time.time() >= expires:
                await ws.close(code=TOKEN_EXPIRED, message=b"token expired: sign in again")
                return
            if connection.busy:
                active = time.monotonic()
            elif time.monotonic() - active >= limits.ws_idle_timeout_s:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"idle")
                return
            continue
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not budget.take():
            connection.metrics.refused("websocket_message_rate")
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
            return
        if message.type == WSMsgType.TEXT:
            if await connection.receive(message.data):
                active = time.monotonic()
        elif message.type == WSMsgType.BINARY:
            await connection.send_error(HmtError(errors.BAD_REQUEST, "binary frames are not accepted; "
                                                                     "send JSON text frames"))
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


async def shutdown(app: web.Application) -> None:
    """After the sessions have ended: let each socket send what is left, then close it as going away."""
    connections: set[Connection] = app[CONNECTIONS]
    await asyncio.gather(*(connection.finish() for connection in list(connections)))
