"""A bare aiohttp proxy for /v1/chat/completions: the floor for the remote suite's time to first delta.

It reads the request's body, POSTs it upstream on a pooled connection and copies the answer back block by block:
no middleware, no checks, no session, no parsing. Whatever a Python gateway on aiohttp adds over this is its own
work; this much is the extra hop itself (two more processes to wake, one more request and response to build).

    python -m bench.proxy --upstream http://127.0.0.1:PORT   (prints `READY <port>`; stops when stdin closes)
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web

from .harness import serve_until_stdin_closes

UPSTREAM = web.AppKey("upstream", str)
CLIENT = web.AppKey("client", aiohttp.ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    async with request.app[CLIENT].post(request.app[UPSTREAM] + request.path, data=body,
                                        headers={"Content-Type": "application/json"}) as upstream:
        response = web.StreamResponse(status=upstream.status,
                                      headers={"Content-Type": upstream.headers.get("Content-Type", "")})
        await response.prepare(request)
        async for block in upstream.content.iter_any():
            await response.write(block)
    await response.write_eof()
    return response


async def serve(upstream: str) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.router.add_post("/v1/chat/completions", forward)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        app[CLIENT] = client
        await serve_until_stdin_closes(web.AppRunner(app, access_log=None))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy")
    parser.add_argument("--upstream", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    asyncio.run(serve(parser.parse_args(argv).upstream))


if __name__ == "__main__":
    main()
