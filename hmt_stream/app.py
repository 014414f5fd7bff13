"""create_app(settings): the aiohttp application, its shared objects under app keys, start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from .cache import PhraseCache
from .config import Settings
from .engine import Engine, load_engine, options_from
from .languages import LANGUAGES
from .scheduler import Scheduler
from .session import MemorySessionStore
from .translator import Translator

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
TRANSLATOR = web.AppKey("translator", Translator)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def build_translator(settings: Settings, engine: Engine) -> Translator:
    return Translator(
        engine,
        options=options_from(settings),
        scheduler=Scheduler(settings.scheduler.max_concurrent, settings.scheduler.max_queue),
        cache=PhraseCache(settings.cache.max_entries, settings.cache.ttl_s, enabled=settings.cache.enabled),
        store=MemorySessionStore(settings.session.retention_s),
        max_chars=settings.generation.max_chars,
        max_input_tokens=settings.generation.max_input_tokens,
    )


async def _engine_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if ENGINE not in app:
        log.info("loading model %s", settings.model.name)
        app[ENGINE] = await asyncio.get_running_loop().run_in_executor(None, load_engine, settings)
    engine = app[ENGINE]
    if settings.model.warmup:
        await engine.warmup()
    app[TRANSLATOR] = build_translator(settings, engine)
    log.info("ready: model %s%s on %s", engine.model_id, " (demo model)" if engine.demo else "",
             getattr(engine, "device", "?"))
    yield
    await app[TRANSLATOR].close()
    await engine.close()


async def health(request: web.Request) -> web.Response:
    app = request.app
    engine = app.get(ENGINE)
    return web.json_response({
        "status": "ok" if TRANSLATOR in app else "starting",
        "model": app[SETTINGS].model.name,
        "demo": bool(engine and engine.demo),
        "ready": TRANSLATOR in app,
    })


async def languages(request: web.Request) -> web.Response:
    return web.json_response([{"code": lang.code, "name": lang.name, "zh_name": lang.zh_name}
                              for lang in LANGUAGES.values()])


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app["web_dir"] / "index.html")


def create_app(settings: Settings, *, engine: Engine | None = None) -> web.Application:
    """The whole server. Pass an engine to skip loading one (tests, benchmarks)."""
    app = web.Application()
    app[SETTINGS] = settings
    if engine is not None:
        app[ENGINE] = engine
    app["web_dir"] = Path(settings.server.web_dir).expanduser() if settings.server.web_dir else WEB_DIR
    app.cleanup_ctx.append(_engine_context)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/languages", languages)
    app.router.add_get("/", index)
    app.router.add_static("/static/", app["web_dir"], name="static")
    return app
