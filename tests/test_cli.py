"""`python -m hmt_stream serve` as a user runs it: a real process on a free loopback port."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hmt_stream", "serve", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def test_a_model_that_cannot_be_loaded_fails_fast_with_advice_not_a_traceback(tmp_path: Path) -> None:
    started = time.monotonic()
    process = serve("--model", str(tmp_path / "missing"), "--port", str(free_port()))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "does not exist" in output and "make demo" in output
    assert "Traceback" not in output
    print(f"failed in {time.monotonic() - started:.1f} s")


def test_a_bad_setting_fails_with_the_key_named(tmp_path: Path) -> None:
    process = serve("--port", "80", env={"HMT_SCHEDULER_MAX_QUEUE": "many"})
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "scheduler.max_queue: expected int, got 'many'" in output and "Traceback" not in output


def test_serve_demo_answers_health(tmp_path: Path) -> None:
    port = free_port()
    process = serve("--model", "demo", "--port", str(port), env={"HMT_MODEL_DEMO_DIR": str(tmp_path / "demo")})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    health = json.load(response)
                break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not come up in 60 s"
                time.sleep(0.2)
        assert health == {"status": "ok", "model": "demo", "demo": True, "ready": True}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "DEMO MODEL" in output
