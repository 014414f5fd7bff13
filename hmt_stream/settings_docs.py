"""The settings table written out: config.toml as it ships and the README's configuration reference, both generated
from config.py's declarations (tests/test_config.py keeps the files equal to them)."""

from __future__ import annotations

from typing import Any

from .config import describe


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def render_toml() -> str:
    """config.toml as it ships: every setting with its default and help (a test keeps the file equal to it)."""
    lines = [
        "# hmt-stream settings. Every setting is listed with its default; environment variables",
        "# HMT_<SECTION>_<KEY> (e.g. HMT_MODEL_NAME=demo) and command-line flags override this file.",
    ]
    current = None
    for section, key, default, help in describe():
        if section != current:
            lines += ["", f"[{section}]"]
            current = section
        lines += [f"# {help}", f"{key} = {_toml_value(default)}"]
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The README's configuration reference."""
    rows = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for section, key, default, help in describe():
        rows.append(f"| `{section}.{key}` | `{_toml_value(default)}` | {help} |")
    return "\n".join(rows) + "\n"
