"""Guard-rail suites (fuzz, soak): the real app over the real demo-model engine, on a loopback port."""

from __future__ import annotations

import os
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import MakeClient

__all__ = ["FAST", "MakeClient"]

# Small and fast: short generations, every request generated (no cache hits hiding the engine path).
FAST = {"cache__enabled": False, "generation__max_new_tokens": 8, "scheduler__max_queue": 1000}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hmt-stream soak")
    group.addoption("--soak-clients", type=int, default=None,
                    help="clients in the soak test (default 200, or $HMT_SOAK_CLIENTS)")
    group.addoption("--soak-concurrency", type=int, default=None,
                    help="most soak clients in flight at once (default 250, or $HMT_SOAK_CONCURRENCY)")
    group.addoption("--soak-seed", type=int, default=None,
                    help="seed of the soak test's randomness (default random, or $HMT_SOAK_SEED)")


def option_or_env(config: pytest.Config, option: str, env: str) -> int | None:
    """A pytest option (registered when tests/guard is on the command line), else an environment variable."""
    try:
        value = config.getoption(option)
    except ValueError:
        value = None
    if value is None and os.environ.get(env):
        value = int(os.environ[env])
    return value if value is None else int(value)


@pytest.fixture
def make_client(make_client: MakeClient) -> MakeClient:
    """tests/conftest.py's app factory, FAST unless overridden."""
    parent = make_client

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        return await parent(**{**FAST, **overrides})
    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A long soak gets the time it needs (pytest-timeout's default is 300 s)."""
    clients = option_or_env(config, "--soak-clients", "HMT_SOAK_CLIENTS") or 200
    if clients > 200:
        for item in items:
            if item.name == "test_soak":
                item.add_marker(pytest.mark.timeout(300 + clients))


# Lines the soak test reports, repeated in the terminal summary so that `make test` shows them without -s.
SOAK_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SOAK_REPORT:
        terminalreporter.write_sep("-", "hmt-stream soak")
        for line in SOAK_REPORT:
            terminalreporter.write_line(line)
