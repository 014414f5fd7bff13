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
from .documents.detect import detector
from .engine import Engine, load_engine, max_concurrent, options_from
from .engine.remote import RemoteEngine
from .errors import ConfigError
from .keys import AUTHENTICATOR, ENGINE, METRICS, SETTINGS, TRANSLATOR
from .metrics import Metrics
from .prompts import profile_for
from .ratelimit import RateLimiter
from .scheduler import Scheduler
from .store import MemorySessionStore, SessionStore
from .store.cache import RedisCacheTier
from .store.redis import RedisSessionStore
from .translator import Observer, Translator

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
# Installed from a wheel, the page is inside the package (setup.py copies it there); in a checkout, installed
# editable or not at all, it is the web/ folder beside the package.
WEB_DIRS = (PACKAGE_DIR / "web", PACKAGE_DIR.parent / "web")
WEB_ROOT = web.AppKey("web_root", Path)


def web_root(configured: str) -> Path:
    """The folder the page is served from: server.web_dir, else the page that came with the package. Raises
    ConfigError, naming what to do, when its index.html cannot be read."""
    if configured:
        root = Path(configured).expanduser()
        advice = "point server.web_dir at a folder that holds the page's index.html"
    else:
        root = next((folder for folder in WEB_DIRS if (folder / "index.html").exists()), WEB_DIRS[0])
        advice = "reinstall hmt-stream, or point server.web_dir at a copy of its web/ folder"
    try:
        (root / "index.html").open("rb").close()
    except OSError as exc:
        key = "server.web_dir: " if configured else ""
        raise ConfigError(f"{key}cannot serve the web page: {root / 'index.html'}: {exc.strerror or exc}; {advice}") \
            from None
    return root


def generation_slots(settings: Settings, engine: Engine) -> int:
    """Generations at once: each remote server's share, or what this process's engine is given (its batch)."""
    r = settings.remote
    return len(r.endpoints) * r.max_concurrent if r.endpoints else max_concurrent(settings, engine)


def build_store(settings: Settings) -> SessionStore:
    if settings.store.url:
        return RedisSessionStore(settings.store.url, retention_s=settings.session.retention_s,
                                 lease_s=settings.store.lease_s)
    return MemorySessionStore(settings.session.retention_s)


def limits_storage(settings: Settings) -> str:
    """Replicas sharing a Redis store share their rate limits there too, through limits' asyncio API."""
    if settings.store.url and settings.limits.storage == "memory://":
        return "async+" + settings.store.url
    return settings.limits.storage


def build_translator(settings: Settings, engine: Engine, observer: Observer | None = None) -> Translator:
    store = build_store(settings)
    tier = RedisCacheTier(store.redis, settings.cache.ttl_s) if isinstance(store, RedisSessionStore) else None
    return Translator(
        engine,
        options=options_from(settings),
        scheduler=Scheduler(generation_slots(settings, engine), settings.scheduler.max_queue,
                            max_per_owner=settings.scheduler.max_per_client),
        cache=PhraseCache(settings.cache.max_entries, settings.cache.ttl_s, enabled=settings.cache.enabled,
                          shared=settings.cache.shared, tier=tier),
        store=store,
        max_chars=settings.generation.max_chars,
        max_input_tokens=settings.generation.max_input_tokens,
        disconnect_grace_s=settings.session.disconnect_grace_s,
        limiter=RateLimiter(settings.limits.rate, limits_storage(settings),
                            chars_per_minute=settings.limits.chars_per_minute),
        refusals=RateLimiter(settings.limits.refusal_rate, limits_storage(settings), what="refused requests",
                             advice="fix the input before sending more"),
        observer=observer,
        profile=profile_for(settings.model.prompts, settings.model.name),
        segment_tokens=settings.generation.segment_tokens,
    )


async def _engine_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    owned = ENGINE not in app  # an engine handed to create_app belongs to the caller, who closes it
    if owned:
        log.info("loading model %s", settings.model.name)
        app[ENGINE] = await asyncio.get_running_loop().run_in_executor(None, load_engine, settings)
    engine = app[ENGINE]
    if isinstance(engine, RemoteEngine):
        await engine.start()  # health checks run from now on, warm-up or not
        app[METRICS].watch_endpoints(engine.router)
    if settings.model.warmup:
        await engine.warmup()
        await asyncio.get_running_loop().run_in_executor(None, detector)  # language detection's models
    metrics = app[METRICS]
    translator = build_translator(settings, engine, observer=metrics)
    metrics.watch(running=lambda: translator.scheduler.running, queued=lambda: translator.scheduler.queued,
                  cache=translator.cache)
    store = translator.store
    if isinstance(store, RedisSessionStore):
        await store.start(adopter=translator.adopt)
    app[TRANSLATOR] = translator
    log.info("ready: model %s%s on %s", engine.model_id, " (demo model)" if engine.demo else "",
             getattr(engine, "device", "?"))
    yield
    await translator.close()
    if isinstance(store, RedisSessionStore):
        await store.flush(5.0)  # the terminal events of the sessions just ended, for readers elsewhere
        await store.close()
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
    app[WEB_ROOT] = web_root(settings.server.web_dir)
    app.cleanup_ctx.append(_engine_context)
    app.on_shutdown.append(_drain)  # before the transports' own shutdown, which closes what is left open
    app.middlewares.append(app[METRICS].middleware)
    app.router.add_get("/metrics", app[METRICS].handler)
    transports.setup(app, settings)
    app.router.add_get("/", index)
    app.router.add_static("/static/", app[WEB_ROOT], name="static")
    return app
