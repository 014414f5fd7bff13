"""The curl examples of docs/protocol.md, run as they are against the real app."""

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def examples() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


async def run(script: str, base_url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, env={**os.environ, "HMT": base_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_the_documented_curl_examples_work(client: TestClient[Any, Any]) -> None:
    one_shot, poll, sse = [script for script in examples() if "/v1/" not in script]  # test_openai: the rest
    base = str(client.make_url("")).rstrip("/")

    answer = json.loads(await run(one_shot, base))
    assert set(answer) == {"session", "text", "cached", "tokens", "ttft_ms", "elapsed_ms", "finish_reason",
                           "prompt_tokens", "segments", "segments_cached"}

    pages = [json.loads(line) for line in (await run(poll, base)).splitlines()]
    events = [e for page in pages for e in page["events"]]
    assert pages[-1]["done"] is True and events[-1]["type"] == "done"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    stream = await run(sse, base)
    assert stream.startswith("id: 1\r\nevent: started\r\n")
    assert "\r\nevent: done\r\n" in stream
