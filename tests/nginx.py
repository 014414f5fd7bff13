"""A real nginx on a free loopback port, configured like a corporate reverse proxy in front of the app, or as
README.md's reverse-proxy snippet says, or as plainly as people first write it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{servers}
}}
"""

_SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_read_timeout 60s;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
{extra}
        }}
    }}
"""

# What people write first: nginx then sends its own `Host: 127.0.0.1:<upstream>`, passes no upgrade and buffers.
PLAIN = """
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
        }}
    }}
"""

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    """The nginx configuration of README.md's reverse-proxy section, as a template for Nginx(servers=...)."""
    section = README.read_text().split("## Behind a reverse proxy", 1)[1]
    snippet = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert snippet is not None, "README.md's reverse-proxy section has no ```nginx block"
    text = snippet.group(1).replace("{", "{{").replace("}", "}}")
    return text.replace("listen 80;", "listen 127.0.0.1:{port};").replace("127.0.0.1:8080", "127.0.0.1:{upstream}")

# Passing WebSocket upgrades takes these two headers; a proxy that lacks them drops the Upgrade (hop-by-hop).
_WEBSOCKET = """            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";"""

# A proxy that buffers responses and ignores the app's X-Accel-Buffering: no. (nginx 1.22 still passes each chunk
# of a stream to a fast client as soon as it has read it, so SSE gets through this one.)
_BUFFER_SSE = """            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;"""

# A proxy that compresses streams (ignoring Cache-Control: no-transform): gzip holds the events until its buffer
# fills or the response ends. This is the proxy that stops SSE and must push clients down to long-poll.
_COMPRESS_SSE = """            gzip on;
            gzip_types text/event-stream;"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """`with Nginx(tmp_path, upstream_port) as proxy:` then talk to proxy.url."""

    def __init__(self, directory: Path, upstream_port: int, *, websocket: bool = False,
                 buffer_sse: bool = False, compress_sse: bool = False, servers: str = _SERVER) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError("nginx is not installed: run `make test` (as root it installs it) or "
                               "`sudo apt-get install nginx-light`")
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra = "\n".join(part for part, on in ((_WEBSOCKET, websocket), (_BUFFER_SSE, buffer_sse),
                                                (_COMPRESS_SSE, compress_sse)) if on)
        self.conf = directory / "nginx.conf"
        server = servers.format(port=self.port, upstream=upstream_port, extra=extra)
        self.conf.write_text(_CONF.format(dir=directory, servers=server))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        self._process = subprocess.Popen([NGINX, "-p", str(self.directory), "-c", str(self.conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    error = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"nginx did not start: {error}") from None
                time.sleep(0.05)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.communicate(timeout=10)
