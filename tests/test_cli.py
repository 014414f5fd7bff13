"""`hmt-stream serve` as a user runs it: a real process on a free loopback port; start-up failures in one line."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hmt_stream import __version__

from .nginx import free_port

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "hmt-stream"


def serve(*args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = (sys.executable, "-m",
          "hmt_stream"), cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen([*command, "serve", *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_for_health(process: subprocess.Popen[str], port: int, timeout: float = 120) -> dict[str, Any]:
    """The server's /api/health once it answers ready; fails with the server's output if it stops first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                health: dict[str, Any] = json.load(response)
            if health["ready"]:
                return health
        except OSError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, f"server did not come up in {timeout:.0f} s"
        time.sleep(0.2)


def fails_in_one_line(process: subprocess.Popen[str]) -> str:
    """The process's last line, after checking that it stopped with status 2 and said why without a traceback."""
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("hmt-stream: "), output
    return last


def test_a_model_directory_that_does_not_exist_fails_with_advice_not_a_traceback(tmp_path: Path) -> None:
    message = fails_in_one_line(serve("--model", str(tmp_path / "missing"), "--port", str(free_port())))
    assert "does not exist" in message and "make demo" in message


class Hub:
    """A stand-in for the model hub on loopback that answers every request 503 and notes its path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "down for the test"}')

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def hub() -> Iterator[Hub]:
    stand_in = Hub()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def test_an_unreachable_hub_fails_after_one_probe_with_advice(tmp_path: Path, hub: Hub) -> None:
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HMT_MODEL_REVISION": "v2"}
    message = fails_in_one_line(serve("--model", "someorg/some-model", "--port", str(free_port()), env=env))
    assert "cannot fetch model 'someorg/some-model' from the hub" in message and "make demo" in message
    # One look at the model (at the configured revision), and no download and its minute of retries after it.
    model_requests = [path for path in hub.paths if "some-model" in path]
    assert model_requests == ["/api/models/someorg/some-model/revision/v2"], hub.paths


@pytest.mark.parametrize("variable,value,expected", [
    ("HMT_SCHEDULER_MAX_QUEUE", "many", "scheduler.max_queue: expected int, got 'many'"),
    ("HMT_LIMITS_STORAGE", "bogus://x", "limits.storage: not a storage URI of the limits library: 'bogus://x'"),
])
def test_a_bad_setting_fails_with_the_key_named(variable: str, value: str, expected: str) -> None:
    message = fails_in_one_line(serve("--port", str(free_port()), env={variable: value}))
    assert expected in message


def test_a_bad_config_file_fails_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[server\nport = 1\n")
    message = fails_in_one_line(serve("--config", str(config)))
    assert f"config file {config}:" in message


def test_a_port_in_use_fails_before_the_model_loads() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve("--model", "demo", "--port", str(port))
        message = fails_in_one_line(process)
    assert message == f"hmt-stream: server.host/server.port: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("problem", ["missing", "unreadable"])
def test_a_web_dir_without_a_readable_page_fails_naming_the_setting(tmp_path: Path, problem: str) -> None:
    web_dir = tmp_path / "web"
    if problem == "unreadable":
        (web_dir / "index.html").mkdir(parents=True)  # unreadable even for root, unlike a chmod
    message = fails_in_one_line(serve("--model", "demo", "--port", str(free_port()),
                                      env={"HMT_SERVER_WEB_DIR": str(web_dir)}))
    assert message.startswith(f"hmt-stream: server.web_dir: cannot serve the web page: {web_dir / 'index.html'}: ")
    assert ("No such file" if problem == "missing" else "Is a directory") in message


def test_any_other_start_up_failure_is_one_line_too(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    message = fails_in_one_line(serve("--model", "demo", "--port", str(free_port()),
                                      env={"HMT_MODEL_DEMO_DIR": str(not_a_folder / "demo")}))
    assert message.startswith("hmt-stream: start-up failed: FileExistsError: ") and str(not_a_folder) in message


@pytest.mark.parametrize("command", [(sys.executable, "-m", "hmt_stream"), (str(CONSOLE_SCRIPT),)],
                         ids=["python -m", "console script"])
def test_version(command: tuple[str, ...]) -> None:
    result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == f"hmt-stream {__version__}\n"


def test_serve_demo_answers_health(tmp_path: Path) -> None:
    port = free_port()
    process = serve("--model", "demo", "--port", str(port), env={"HMT_MODEL_DEMO_DIR": str(tmp_path / "demo")},
                    command=(str(CONSOLE_SCRIPT),))
    try:
        health = wait_for_health(process, port)
        assert health == {"status": "ok", "model": "demo", "demo": True, "ready": True, "version": __version__}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "DEMO MODEL" in output
