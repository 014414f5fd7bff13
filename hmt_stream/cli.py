"""Command line: `serve` runs the server, `translate` streams a translation from one."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, ModelLoadError

DEFAULT_CONFIG = "config.toml"


def _serve(args: argparse.Namespace) -> int:
    from . import config, serving
    from .accesslog import AccessLogger, redact_secrets
    from .app import create_app

    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model.name"] = args.model
    if args.host:
        overrides["server.host"] = args.host
    if args.port is not None:
        overrides["server.port"] = args.port
    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
    settings = config.load(path, overrides=overrides)
    check_address(settings.server.host, settings.server.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_secrets()
    app = create_app(settings)
    if settings.server.gc_tuning:
        app.cleanup_ctx.append(_tune_gc)  # after the engine's context: the model is loaded by then
    if settings.model.name == "demo":
        print("Serving the DEMO MODEL: random weights, its output is not a translation.", file=sys.stderr)
    announce = _Announcer(settings)
    try:
        # handler_cancellation: a client that goes away ends its handler at once, so its session sees the reader
        # leave. shutdown_timeout: after on_shutdown has ended every session, how long the last handlers get.
        # keepalive_timeout: aiohttp closes a connection that has sent no whole request head for that long (from
        # its start, or since its last answer), which is limits.header_timeout_s.
        serving.run(app, host=settings.server.host, port=settings.server.port,
                    max_connections=settings.server.max_connections, print=announce,
                    handler_cancellation=True, access_log_class=AccessLogger, shutdown_timeout=5,
                    keepalive_timeout=settings.limits.header_timeout_s)
    except (ConfigError, ModelLoadError):
        raise
    except Exception as exc:
        if announce.serving:  # a failure while serving is a bug to see in full
            raise
        raise StartupFailed(exc) from exc
    return 0


class StartupFailed(Exception):
    """Anything else that stops the server before it serves: said in one line, like the errors we expect."""

    def __init__(self, cause: Exception) -> None:
        text = str(cause).strip().splitlines()
        super().__init__(f"start-up failed: {type(cause).__name__}: {text[0] if text else 'no details'}")


def check_address(host: str, port: int) -> None:
    """Fail in a second, not after the model has loaded (minutes for the 7B one), when host:port cannot be
    listened on: in use, not an address of this machine, or a privileged port."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                   flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                # As asyncio's server does: otherwise a port a previous run left in TIME_WAIT looks taken.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as exc:
        raise ConfigError(f"server.host/server.port: cannot listen on {host}:{port}: {exc.strerror or exc}") \
            from None


def tune_gc() -> None:
    """A process-wide choice, so `serve` makes it, not create_app: the model and everything loaded at start-up
    leave the collector's view, and collections run less often, so a full one no longer pauses hundreds of
    streams at once (server.gc_tuning)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _tune_gc(app: Any) -> AsyncIterator[None]:
    tune_gc()
    yield


class _Announcer:
    """run_app's `print`: called once the server listens, so it also tells start-up from serving."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.serving = False

    def __call__(self, _: str) -> None:
        self.serving = True
        s = self.settings
        print(f"hmt-stream serving {s.model.name} on http://{s.server.host}:{s.server.port}/", flush=True)


async def _translate_async(args: argparse.Namespace) -> int:
    import aiohttp

    from .client import ServerError, StreamClient, TransportFailed

    def show(event: dict[str, Any]) -> None:
        if event["type"] == "delta":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
        elif event["type"] == "queued":
            print(f"[queued #{event['position']}]", file=sys.stderr)

    def switched(name: str, why: str) -> None:
        if args.verbose or why != "trying":
            print(f"[{name}: {why}]", file=sys.stderr)

    async with aiohttp.ClientSession(args.server.rstrip("/")) as http:
        client = StreamClient(http, transport=args.transport, on_event=show, on_transport=switched)
        try:
            if (await client.negotiate())["demo"]:
                print("[demo model: the output is not a translation]", file=sys.stderr)
            terminal = await client.translate(args.text, args.source, args.target)
        except ServerError as exc:
            print(f"hmt-stream: {exc}", file=sys.stderr)
            return 1
        except (TransportFailed, aiohttp.ClientError, OSError) as exc:
            print(f"hmt-stream: cannot reach {args.server}: {exc}", file=sys.stderr)
            return 1
        except asyncio.CancelledError:
            await client.cancel()
            raise
    print()
    if terminal["type"] == "error":
        print(f"hmt-stream: {terminal['code']}: {terminal['message']}", file=sys.stderr)
        return 1
    if terminal["type"] == "cancelled":
        print("hmt-stream: cancelled", file=sys.stderr)
        return 1
    return 0


def _translate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_translate_async(args))
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """`hmt-stream` (the console command) and `python -m hmt_stream`."""
    parser = argparse.ArgumentParser(prog="hmt-stream", description="Streaming Hunyuan-MT translation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the translation server")
    serve.add_argument("--config", help=f"TOML settings file (default: ./{DEFAULT_CONFIG} when present)")
    serve.add_argument("--model", help="hub id, local directory, or 'demo'")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.set_defaults(run=_serve)
    translate = commands.add_parser("translate", help="stream a translation from a running server to stdout")
    translate.add_argument("text", help="the text to translate")
    translate.add_argument("--to", dest="target", required=True, help="target language code, e.g. en")
    translate.add_argument("--from", dest="source", default="auto", help="source language code (default: auto)")
    translate.add_argument("--server", default="http://127.0.0.1:8080", help="server URL")
    translate.add_argument("--transport", choices=("ws", "sse", "poll"),
                           help="use only this transport (default: negotiate ws, then sse, then poll)")
    translate.add_argument("-v", "--verbose", action="store_true", help="report each transport tried")
    translate.set_defaults(run=_translate)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigError, ModelLoadError, StartupFailed) as exc:
        print(f"hmt-stream: {exc}", file=sys.stderr)
        return 2
