"""Replicas for real: N `python -m hmt_stream serve` processes on the demo model sharing one redis-server, behind
nginx round-robin without stickiness (README's "Running several replicas" upstream, its access log naming the
replica that served each request)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.nginx import README, Nginx
from tests.remote.test_processes import COMMON, Server
from tests.replicas.redis_server import RedisServer

# Greedy decoding: the demo model writes the same long text every time (see tests/e2e/conftest.py's LONG).
REPLICA_ENV = {**COMMON, "HMT_GENERATION_MAX_NEW_TOKENS": "300", "HMT_STORE_LEASE_S": "2",
               "HMT_SCHEDULER_MAX_CONCURRENT": "4", "HMT_GENERATION_WORKERS": "4",
               "HMT_LIMITS_REFUSAL_RATE": "100000/minute", "HMT_SCHEDULER_MAX_PER_CLIENT": "0",
               "HMT_LIMITS_MAX_READERS_PER_CLIENT": "100000", "HMT_LIMITS_MAX_WEBSOCKETS_PER_CLIENT": "100000",
               "HMT_TRANSPORTS_HEARTBEAT_S": "2"}

LOG_FORMAT = """
    log_format replicas '$request_method $uri $status $upstream_addr';
    access_log {dir}/replicas.log replicas;
"""


def upstream_config(ports: list[int]) -> str:
    """README's replica snippet, its upstream servers replaced by ours and its port by the proxy's."""
    section = README.read_text().split("## Running several replicas", 1)[1]
    snippet = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert snippet is not None, "README.md's replicas section has no ```nginx block"
    text = re.sub(r"(\n\s*server 127\.0\.0\.1:\d+;)+", "".join(f"\n    server 127.0.0.1:{p};" for p in ports),
                  snippet.group(1))
    text = text.replace("{", "{{").replace("}", "}}").replace("listen 80;", "listen 127.0.0.1:{port};")
    return text


class Cluster:
    def __init__(self, directory: Path, redis: RedisServer, demo_dir: Path, count: int,
                 **env: str) -> None:
        self.directory = directory
        self.redis = redis
        self.env = {**REPLICA_ENV, "HMT_MODEL_DEMO_DIR": str(demo_dir), "HMT_STORE_URL": redis.url, **env}
        self.replicas = [Server(f"replica{i}", dict(self.env)) for i in range(count)]
        self.nginx = Nginx(directory, 0, servers=LOG_FORMAT.format(dir=directory)
                           + upstream_config([r.port for r in self.replicas]))

    @property
    def url(self) -> str:
        return self.nginx.url

    def start(self) -> Cluster:
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            wait_ready(replica)
        self.nginx.__enter__()
        return self

    def stop(self) -> None:
        self.nginx.__exit__(None, None, None)
        for replica in self.replicas:
            replica.stop()
            replica.log.unlink(missing_ok=True)

    def served(self) -> list[tuple[str, str, int]]:
        """(method, path, replica port) of each request nginx passed on, in order."""
        lines = (self.directory / "replicas.log").read_text().splitlines()
        served = []
        for line in lines:
            method, path, _, upstream = line.split(" ", 3)
            served.append((method, path, int(upstream.rsplit(",", 1)[-1].strip().rsplit(":", 1)[1])))
        return served


def stuck(cluster: Cluster, pending: set[asyncio.Task[Any]]) -> str:
    """Why clients never finished: their tasks (named after their last event), and what the replicas logged."""
    lines = [f"{len(pending)} clients never finished: {sorted(task.get_name() for task in pending)}"]
    for replica in cluster.replicas:
        lines += [f"--- {replica.name}", replica.tail(40)]
    return "\n".join(lines)


def wait_ready(replica: Server, timeout: float = 180) -> None:
    began = time.monotonic()
    while True:
        assert replica.process is not None and replica.process.poll() is None, \
            f"{replica.name} exited:\n{replica.tail()}"
        try:
            with urllib.request.urlopen(f"{replica.base}/api/health", timeout=2) as response:
                if json.load(response)["ready"]:
                    return
        except OSError:
            pass
        assert time.monotonic() - began < timeout, f"{replica.name} did not start:\n{replica.tail()}"
        time.sleep(0.2)


def check(events: list[dict[str, Any]]) -> str:
    """Ends with done; seq without gaps; the deltas add up to done.text. Returns the text."""
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1)), [e["seq"] for e in events]
    assert events[-1]["type"] == "done", events[-1]
    text = "".join(event["text"] for event in events if event["type"] == "delta")
    assert text == events[-1]["text"]
    return text
