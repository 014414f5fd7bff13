"""Shared fixtures: the demo checkpoint (built once per run) and the real TransformersEngine over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hmt_stream import config
from hmt_stream.app import build_translator
from hmt_stream.engine.demo import build_demo_model
from hmt_stream.engine.transformers import TransformersEngine
from hmt_stream.translator import Translator


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("demo") / "model")


@pytest.fixture(scope="session")
def engine(demo_dir: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine.load(str(demo_dir), model_id="demo", demo=True, device="cpu", workers=4)
    yield engine
    engine._executor.shutdown(wait=True)


def make_settings(demo_dir: Path, **overrides: Any) -> config.Settings:
    """Settings for tests: the demo model, no warm-up, no practical rate limit (tests of the limit set their own),
    plus overrides as section__key=value."""
    base = {"model.name": "demo", "model.demo_dir": str(demo_dir), "model.warmup": False,
            "generation.max_new_tokens": 40, "limits.rate": "100000/minute"}
    return config.Settings().replace({**base, **{k.replace("__", "."): v for k, v in overrides.items()}})


@pytest.fixture
def settings(demo_dir: Path) -> config.Settings:
    return make_settings(demo_dir)


@pytest.fixture
async def translator(settings: config.Settings, engine: TransformersEngine) -> AsyncIterator[Translator]:
    translator = build_translator(settings, engine)
    yield translator
    await translator.close()
