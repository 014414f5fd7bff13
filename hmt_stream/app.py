"""create_app(settings): the aiohttp application, its shared objects under app keys, start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import transports
from .auth import Authenticator
from .cache import PhraseCache
from .config import Settings
from .engine import Engine, load_engine, max_concurrent, options_from
from .keys import AUTHENTICATOR, ENGINE, METRICS, SETTINGS, TRANSLATOR
from .metrics import Metrics
from .ratelimit import RateLimiter
from .scheduler import Scheduler
from .session import MemorySessionStore
from .translator import Observer, Translator

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WEB_ROOT = web.AppKey("web_root", Path)


def build_translator(settings: Settings, engine: Engine, observer: Observer | None = None) -> Translator:
    return Translator(
        engine,
        options=options_from(settings),
        scheduler=Scheduler(max_concurrent(settings, engine), settings.scheduler.max_queue),
        cache=PhraseCache(settings.cache.max_entries, settings.cache.ttl_s, enabled=settings.cache.enabled),
        store=MemorySessionStore(settings.session.retention_s),
        max_chars=settings.generation.max_chars,
        max_input_tokens=settings.generation.max_input_tokens,
        disconnect_grace_s=settings.session.disconnect_grace_s,
        limiter=RateLimiter(settings.limits.rate, settings.limits.storage),
        observer=observer,
    )


async def _engine_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    owned = ENGINE not in app  # an engine handed to create_app belongs to the caller, who closes it
    if owned:
        log.info("loading model %s", settings.model.name)
        app[ENGINE] = await asyncio.get_running_loop().run_in_executor(None, load_engine, settings)
    engine = app[ENGINE]
    if settings.model.warmup:
        await engine.warmup()
    metrics = app[METRICS]
    translator = build_translator(settings, engine, observer=metrics)
    metrics.watch(running=lambda: translator.scheduler.running, queued=lambda: translator.scheduler.queued,
                  cache=translator.cache)
    app[TRANSLATOR] = translator
    log.info("ready: model %s%s on %s", engine.model_id, " (demo model)" if engine.demo else "",
             getattr(engine, "device", "?"))
    yield
    await translator.close()
    if owned:
        await engine.close()


async def _drain(app: web.Application) -> None:
    """On SIGTERM (after the listening sockets have closed): let translations finish, then cancel the rest."""
    translator = app.get(TRANSLATOR)
    if translator is not None:
        await translator.drain(app[SETTINGS].limits.shutdown_grace_s)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[WEB_ROOT] / "index.html")


def create_app(settings: Settings, *, engine: Engine | None = None) -> web.Application:
    """The whole server. Pass an engine to skip loading one (tests, benchmarks)."""
    app = web.Application(client_max_size=settings.limits.max_body_bytes)
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = Authenticator(settings.auth)
    app[METRICS] = Metrics()
    if engine is not None:
        app[ENGINE] = engine
    app[WEB_ROOT] = Path(settings.server.web_dir).expanduser() if settings.server.web_dir else WEB_DIR
    app.cleanup_ctx.append(_engine_context)
    app.on_shutdown.append(_drain)  # before the transports' own shutdown, which closes what is left open
    app.middlewares.append(app[METRICS].middleware)
    app.router.add_get("/metrics", app[METRICS].handler)
    transports.setup(app, settings)
    app.router.add_get("/", index)
    app.router.add_static("/static/", app[WEB_ROOT], name="static")
    return app
