from pathlib import Path

import pytest

from hmt_stream import config, settings_docs
from hmt_stream.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_shipped_config_lists_every_setting_with_its_default_and_help() -> None:
    assert (ROOT / "config.toml").read_text() == settings_docs.render_toml()
    assert config.load(ROOT / "config.toml") == config.Settings()


def test_the_readme_documents_every_setting() -> None:
    assert settings_docs.render_markdown() in (ROOT / "README.md").read_text()


def test_an_unknown_key_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.nmae: unknown setting 'nmae'"):
        config.load(write(tmp_path, '[model]\nnmae = "demo"\n'))
    with pytest.raises(ConfigError, match=r"modle\.name: unknown section 'modle'"):
        config.load(write(tmp_path, '[modle]\nname = "demo"\n'))


def test_a_wrong_type_is_an_error_that_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"scheduler\.max_concurrent: expected int, got str '2'"):
        config.load(write(tmp_path, '[scheduler]\nmax_concurrent = "2"\n'))
    with pytest.raises(ConfigError, match=r"model\.load_in_8bit: expected bool, got int 1"):
        config.load(write(tmp_path, "[model]\nload_in_8bit = 1\n"))


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.dtype: must be one of auto, bfloat16, float16, float32"):
        config.load(write(tmp_path, '[model]\ndtype = "int4"\n'))
    with pytest.raises(ConfigError, match=r"scheduler\.max_concurrent: must be at least 0"):
        config.load(write(tmp_path, "[scheduler]\nmax_concurrent = -1\n"))


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nname = "from-file"\n[server]\nport = 9000\n[cache]\nttl_s = 5\n')
    settings = config.load(path, environ={"HMT_SERVER_PORT": "9100", "HMT_MODEL_LOAD_IN_8BIT": "yes"},
                           overrides={"model.name": "demo"})
    assert settings.model.name == "demo"
    assert settings.server.port == 9100
    assert settings.model.load_in_8bit is True
    assert settings.cache.ttl_s == 5.0


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"server\.port: expected int, got 'abc'"):
        config.load(environ={"HMT_SERVER_PORT": "abc"})
    with pytest.raises(ConfigError, match="HMT_NOPE_X: no such section"):
        config.load(environ={"HMT_NOPE_X": "1"})
    with pytest.raises(ConfigError, match=r"model\.warmup: expected a boolean"):
        config.load(environ={"HMT_MODEL_WARMUP": "maybe"})


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"config\.toml"):
        config.load(write(tmp_path, "[model\n"))
