"""A real redis-server for the replica tests, started once per module on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.replicas.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
