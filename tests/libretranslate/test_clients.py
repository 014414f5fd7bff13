"""LibreTranslate's own clients, unchanged, against hmt-stream: libretranslatepy (from PyPI) and the curl forms of
LibreTranslate's documented API examples. The demo model's output is meaningless: these tests check the shape of
each answer, its codes and counts, never a translation."""

from __future__ import annotations

import asyncio
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from libretranslatepy import LibreTranslateAPI

from ..conftest import MakeClient
from ..transports.conftest import translator_of

KEY = "libre-client-key-0001"
AUTH = {"auth__enabled": True, "auth__api_keys": (KEY,)}


def api(client: TestClient[Any, Any], key: str | None = None) -> LibreTranslateAPI:
    return LibreTranslateAPI(str(client.make_url("/")), api_key=key)


def refusal(error: urllib.error.HTTPError) -> tuple[int, Any]:
    return error.code, json.loads(error.read())


async def test_libretranslatepy_translates_detects_and_lists_languages(client: TestClient[Any, Any]) -> None:
    lt = api(client)
    translated = await asyncio.to_thread(lt.translate, "The weather is fine today.", "en", "de")
    assert isinstance(translated, str) and translated
    detected = await asyncio.to_thread(lt.detect, "Der Hase lachte laut über die langsame Schildkröte.")
    assert detected[0]["language"] == "de" and 0 < detected[0]["confidence"] <= 100
    assert [d["confidence"] for d in detected] == sorted((d["confidence"] for d in detected), reverse=True)
    languages = await asyncio.to_thread(lt.languages)  # a GET with a form body, as this client sends it
    codes = {language["code"] for language in languages}
    assert {"en", "zh-Hans", "zh-Hant", "yue"} <= codes and len(languages) == 38
    assert all(set(language) == {"code", "name", "targets"} for language in languages)
    # Their codes work both ways: Traditional Chinese by its old model code, from Simplified by its new one.
    assert await asyncio.to_thread(lt.translate, "天气很好。", "zh-Hans", "zt")
    cache = translator_of(client).cache
    assert (cache.hits, cache.misses) == (0, 2)
    assert await asyncio.to_thread(lt.translate, "The weather is fine today.", "en", "de") == translated
    assert cache.hits == 1  # the same request again: the phrase cache answered


async def test_libretranslatepy_with_an_api_key(make_client: MakeClient) -> None:
    client = await make_client(**AUTH)
    assert await asyncio.to_thread(api(client, KEY).translate, "Good morning.", "en", "fr")
    found = await asyncio.to_thread(api(client, KEY).detect, "Bonjour tout le monde, comment allez-vous ?")
    assert found[0]["language"] == "fr"
    assert len(await asyncio.to_thread(api(client).languages)) == 38  # public, as in LibreTranslate
    for lt in (api(client), api(client, "not-the-key-at-all-0001")):
        for call in (lambda lt=lt: lt.translate("Good morning.", "en", "fr"), lambda lt=lt: lt.detect("Bonjour")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                await asyncio.to_thread(call)
            status, body = refusal(refused.value)
            assert status == 403 and isinstance(body["error"], str) and body["error"]


async def _curl(*args: str) -> Any:
    """curl as a subprocess (the test server shares this event loop: it must not block)."""
    process = await asyncio.create_subprocess_exec("curl", "-sS", "--max-time", "60", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


async def curl_json(url: str, body: dict[str, Any]) -> Any:
    return json.loads(await _curl("-X", "POST", url, "-H", "Content-Type: application/json", "-d", json.dumps(body)))


async def test_the_documented_examples_with_curl(client: TestClient[Any, Any]) -> None:
    url = str(client.make_url("/translate"))
    simple = await curl_json(url, {"q": "Hello!", "source": "en", "target": "es", "api_key": ""})
    assert set(simple) == {"translatedText"} and isinstance(simple["translatedText"], str)
    auto = await curl_json(url, {"q": "Bonjour ! Comment allez-vous aujourd'hui ?", "source": "auto",
                                 "target": "en", "api_key": ""})
    assert set(auto) == {"translatedText", "detectedLanguage"}
    assert auto["detectedLanguage"]["language"] == "fr" and 0 < auto["detectedLanguage"]["confidence"] <= 100
    html = await curl_json(url, {"q": '<p class="green">Hello!</p>', "source": "en", "target": "es",
                                 "format": "html", "api_key": ""})
    assert html["translatedText"].startswith('<p class="green">') and html["translatedText"].endswith("</p>")
    alternatives = await curl_json(url, {"q": "Hello", "source": "en", "target": "it", "format": "text",
                                         "alternatives": 3, "api_key": ""})
    assert alternatives["alternatives"] == [] and isinstance(alternatives["translatedText"], str)
    # The form the API page's "try it" sends.
    form = json.loads(await _curl("-X", "POST", url, "-H", "accept: application/json", "-H",
                                  "Content-Type: application/x-www-form-urlencoded",
                                  "-d", "q=Hello&source=en&target=es&format=text&api_key="))
    assert set(form) == {"translatedText"}
    detect = await curl_json(str(client.make_url("/detect")), {"q": "Hallo, wie geht es dir heute?"})
    assert detect[0]["language"] == "de" and set(detect[0]) == {"confidence", "language"}
    languages = json.loads(await _curl(str(client.make_url("/languages"))))
    assert languages[0] == {"code": "zh-Hans", "name": "Chinese", "targets": languages[0]["targets"]}
    settings = json.loads(await _curl(str(client.make_url("/frontend/settings"))))
    assert settings["charLimit"] == 100000 and settings["keyRequired"] is False


async def test_translate_file_with_curl(client: TestClient[Any, Any], tmp_path: Path) -> None:
    document = tmp_path / "notes.md"
    document.write_text("# Notes\n\nThe wind rose at dawn.\n\n```\nkeep = 'as is'\n```\n", encoding="utf-8")
    answer = json.loads(await _curl("-F", f"file=@{document}", "-F", "source=en", "-F", "target=fr",
                                    str(client.make_url("/translate_file"))))
    assert set(answer) == {"translatedFileUrl"}
    assert answer["translatedFileUrl"].startswith(str(client.make_url("/download_file/")))
    assert answer["translatedFileUrl"].endswith("/notes.md")
    saved = tmp_path / "translated.md"
    await _curl("-o", str(saved), "-D", str(tmp_path / "headers"), answer["translatedFileUrl"])
    translated = saved.read_text(encoding="utf-8")
    assert translated.startswith("# ") and translated.endswith("\n\n```\nkeep = 'as is'\n```\n")
    headers = (tmp_path / "headers").read_text().lower()
    assert "content-type: text/markdown; charset=utf-8" in headers
    assert 'content-disposition: attachment; filename="notes.md"' in headers
