"""Long-poll: `?after=N&timeout=S` answers with the events after N as soon as there is one, or none after S."""

from __future__ import annotations

import math

from aiohttp import web

from .. import errors
from ..errors import HmtError
from ..keys import SETTINGS
from .limits import READERS, hold
from .rest import get_session


def _number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HmtError(errors.BAD_REQUEST, f"{name!r} must be a number, not {raw!r}") from None
    if not 0 <= value < math.inf:  # also refuses NaN
        raise HmtError(errors.BAD_REQUEST, f"{name!r} must be a finite number, zero or more, not {raw!r}")
    return value


async def handler(request: web.Request) -> web.Response:
    session = await get_session(request)
    t = request.app[SETTINGS].transports
    after = int(_number(request, "after", 0))
    timeout = min(_number(request, "timeout", t.poll_timeout_s), t.poll_timeout_max_s)
    with hold(request, READERS):
        batch = await session.next_batch(after, timeout)
    last = batch[-1].seq if batch else max(after, 0)
    done = session.finished and last >= session.last_seq
    # The events are already JSON; join them instead of decoding and encoding again.
    body = f'{{"events":[{",".join(e.json for e in batch)}],"next":{last},"done":{"true" if done else "false"}}}'
    return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})
