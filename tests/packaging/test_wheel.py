"""The package as an index would ship it: build the sdist and the wheel from a copy of the checkout, install the
wheel into a fresh virtualenv, run `hmt-stream serve` from an empty folder and use the page and the API.

Offline and quick: the build uses the build tools already installed (no isolation), and the fresh virtualenv sees
this one's site-packages through a .pth file, so torch and the rest are re-used, never fetched."""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

from hmt_stream import __version__

from ..nginx import free_port
from ..test_cli import wait_for_health

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
WEB = ROOT / "web"
# What a clean clone does not have: environments, caches, build output, mutmut's copy of the code.
NOT_IN_A_CLONE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "mutants", "screenshots")


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and, built from it as pip builds from an index, the wheel."""
    out = tmp_path_factory.mktemp("dist")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE))
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source)
    return out


def wheel_of(dist: Path) -> Path:
    [wheel] = dist.glob("hmt_stream-*.whl")
    return wheel


def test_the_wheel_carries_the_page_and_the_command_and_tells_an_index_what_it_is(dist: Path) -> None:
    assert len(list(dist.glob("hmt_stream-*.tar.gz"))) == 1
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        names = set(wheel.namelist())
        for file in (path for path in WEB.rglob("*") if path.is_file()):
            packed = f"hmt_stream/web/{file.relative_to(WEB).as_posix()}"
            assert wheel.read(packed) == file.read_bytes(), packed
        assert {name.split("/")[0] for name in names} == {"hmt_stream", f"hmt_stream-{__version__}.dist-info"}
        info = f"hmt_stream-{__version__}.dist-info"
        assert "hmt-stream = hmt_stream.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert metadata["Name"] == "hmt-stream" and metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    assert classifiers and set(classifiers) <= KNOWN_CLASSIFIERS, set(classifiers) - KNOWN_CLASSIFIERS
    assert "Programming Language :: Python :: 3.11" in classifiers
    urls = metadata.get_all("Project-URL") or []
    assert urls and all(re.fullmatch(r"[^,]+, https://\S+", url) for url in urls), urls
    assert metadata["Summary"] and str(metadata.get_payload()).startswith("# hmt-stream")


def fresh_venv(folder: Path) -> Path:
    """A virtualenv without pip or packages of its own; this environment's site-packages come after its own."""
    run(sys.executable, "-m", "venv", "--without-pip", folder)
    [site] = folder.glob("lib/python*/site-packages")
    # A path in a .pth file joins sys.path, but the .pth files there are not read: this checkout's editable
    # install of hmt_stream stays out of the new environment.
    (site / "reuse-installed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin"


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read()


def referenced_assets(html: str) -> set[str]:
    return set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))


def imported_modules(script: str, url: str) -> set[str]:
    """Module URLs a JavaScript module imports, resolved against its own URL."""
    base = url.rsplit("/", 1)[0]
    return {f"{base}/{name[2:]}" if name.startswith("./") else name
            for name in re.findall(r'''(?:from|import)\s*\(?\s*["'](\.?/[^"']+)["']''', script)}


def serve(command: list[str | Path], cwd: Path, demo_dir: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "HMT_MODEL_DEMO_DIR": str(demo_dir)}
    process = subprocess.Popen([*command, "serve", "--model", "demo", "--port", str(port)], cwd=cwd, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, port


def check_page_and_translation(process: subprocess.Popen[str], port: int) -> None:
    """/ and every file it references (and they import) are this checkout's web/ files; one translation works."""
    try:
        health = wait_for_health(process, port)
        assert health["version"] == __version__ and health["demo"] is True
        url = f"http://127.0.0.1:{port}"
        status, page = get(url + "/")
        assert status == 200 and page == (WEB / "index.html").read_bytes()
        pending, fetched = referenced_assets(page.decode()), set()
        assert {"/static/app.js", "/static/style.css"} <= pending
        while pending:
            path = pending.pop()
            fetched.add(path)
            status, body = get(url + path)
            assert status == 200 and body == (WEB / path.removeprefix("/static/")).read_bytes(), path
            if path.endswith(".js"):
                pending |= imported_modules(body.decode(), path) - fetched
        assert "/static/client.js" in fetched
        translated = translate(url)
        assert isinstance(translated["text"], str) and translated["cached"] is False
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output


def test_the_installed_wheel_serves_the_page_and_translates(dist: Path, tmp_path: Path, demo_dir: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")
    run(bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet",
        wheel_of(dist))
    where = run(bin_dir / "python", "-c", "import hmt_stream; print(hmt_stream.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where
    assert run(bin_dir / "hmt-stream", "--version", cwd=tmp_path) == f"hmt-stream {__version__}\n"
    folder = tmp_path / "elsewhere"  # no config.toml, no web/ folder here: only what the wheel brought
    folder.mkdir()
    check_page_and_translation(*serve([bin_dir / "hmt-stream"], folder, demo_dir))


def test_a_checkout_that_is_not_installed_serves_its_own_web_folder(dist: Path, tmp_path: Path,
                                                                    demo_dir: Path) -> None:
    bin_dir = fresh_venv(tmp_path / "venv")  # hmt_stream is not importable there, except from the current folder
    checkout = dist / "source"
    check_page_and_translation(*serve([bin_dir / "python", "-m", "hmt_stream"], checkout, demo_dir))


def translate(url: str) -> dict[str, Any]:
    body = json.dumps({"text": "Hello from the wheel", "target": "fr"}).encode()
    request = urllib.request.Request(f"{url}/api/translate", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.load(response)
    return answer
