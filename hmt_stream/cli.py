"""Command line: `serve` runs the server; more commands join as the project grows."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelLoadError

DEFAULT_CONFIG = "config.toml"


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import config
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    if settings.model.name == "demo":
        print("Serving the DEMO MODEL: random weights, its output is not a translation.", file=sys.stderr)
    # handler_cancellation: a client that goes away ends its handler at once, so its session sees the reader leave.
    web.run_app(app, host=settings.server.host, port=settings.server.port, print=_announce(settings),
                handler_cancellation=True)
    return 0


def _announce(settings: Any) -> Any:
    def show(_: str) -> None:
        print(f"hmt-stream serving {settings.model.name} on http://{settings.server.host}:{settings.server.port}/",
              flush=True)
    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hmt_stream", description="Streaming Hunyuan-MT translation.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the translation server")
    serve.add_argument("--config", help=f"TOML settings file (default: ./{DEFAULT_CONFIG} when present)")
    serve.add_argument("--model", help="hub id, local directory, or 'demo'")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="TCP port (default 8080)")
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigError, ModelLoadError) as exc:
        print(f"hmt-stream: {exc}", file=sys.stderr)
        return 2
