"""The application's shared objects, under typed aiohttp app keys."""

from __future__ import annotations

from aiohttp import web

from .config import Settings
from .engine import Engine
from .translator import Translator

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
TRANSLATOR = web.AppKey("translator", Translator)
