"""serving.py's parts on their own: the connection limit's arithmetic and the once-a-minute report. (The whole
server under a flood of connections is tests/guard/test_flood.py.)"""

import asyncio
import logging
import resource

import pytest
from aiohttp import web

from hmt_stream.serving import BACKLOG, ConnectionCap, connection_limit


def test_the_limit_leaves_room_under_the_file_limit() -> None:
    limit = connection_limit(10**9)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 1 <= limit <= soft - BACKLOG
    assert connection_limit(5) == 5


async def test_failed_accepts_and_refusals_are_reported_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response()

    reasons: list[str] = []
    cap = ConnectionCap(web.Server(handler), set(), 10, on_refusal=reasons.append)
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.WARNING, logger="hmt_stream.serving")
    for _ in range(500):  # what asyncio reports for each socket it could not accept at the file limit
        cap.loop_exception(loop, {"message": "socket.accept() out of system resource",
                                  "exception": OSError(24, "Too many open files")})
    reports = [record.getMessage() for record in caplog.records if record.name == "hmt_stream.serving"]
    assert len(reports) == 1 and "1 accepts failed at the file limit" in reports[0]
    assert reasons == ["file_limit"] * 500
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="asyncio")
    cap.loop_exception(loop, {"message": "something else went wrong"})  # anything else: asyncio's own report
    assert [record.getMessage() for record in caplog.records] == ["something else went wrong"]
