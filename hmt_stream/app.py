"""create_app(settings): the aiohttp application, its shared objects under app keys, start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from . import transports
from .cache import PhraseCache
from .config import Settings
from .engine import Engine, load_engine, options_from
from .keys import ENGINE, SETTINGS, TRANSLATOR
from .scheduler import Scheduler
from .session import MemorySessionStore
from .translator import Translator

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WEB_ROOT = web.AppKey("web_root", Path)


def build_translator(settings: Settings, engine: Engine) -> Translator:
    return Translator(
        engine,
        options=options_from(settings),
        scheduler=Scheduler(settings.scheduler.max_concurrent, settings.scheduler.max_queue),
        cache=PhraseCache(settings.cache.max_entries, settings.cache.ttl_s, enabled=settings.cache.enabled),
        store=MemorySessionStore(settings.session.retention_s),
        max_chars=settings.generation.max_chars,
        max_input_tokens=settings.generation.max_input_tokens,
        disconnect_grace_s=settings.session.disconnect_grace_s,
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
    translator = build_translator(settings, engine)
    app[TRANSLATOR] = translator
    log.info("ready: model %s%s on %s", engine.model_id, " (demo model)" if engine.demo else "",
             getattr(engine, "device", "?"))
    yield
    await translator.close()
    if owned:
        await engine.close()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[WEB_ROOT] / "index.html")


def create_app(settings: Settings, *, engine: Engine | None = None) -> web.Application:
    """The whole server. Pass an engine to skip loading one (tests, benchmarks)."""
    app = web.Application()
    app[SETTINGS] = settings
    if engine is not None:
        app[ENGINE] = engine
    app[WEB_ROOT] = Path(settings.server.web_dir).expanduser() if settings.server.web_dir else WEB_DIR
    app.cleanup_ctx.append(_engine_context)
    transports.setup(app, settings)
    app.router.add_get("/", index)
    app.router.add_static("/static/", app[WEB_ROOT], name="static")
    return app
