"""The application's shared objects, under typed aiohttp app keys."""

from __future__ import annotations

from aiohttp import web

from .auth import Authenticator
from .config import Settings
from .engine import Engine
from .metrics import Metrics
from .translator import Translator

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
TRANSLATOR = web.AppKey("translator", Translator)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
