"""Decoding the JSON a client sent: every way it can fail is a `bad_request`, never a crash."""

from __future__ import annotations

import json
from typing import Any

from . import errors
from .errors import HmtError


def loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HmtError(errors.BAD_REQUEST, f"not valid JSON: {exc}") from None
    except RecursionError:
        # Python's decoder recurses per nesting level; thousands of `[` exhaust the stack.
        raise HmtError(errors.BAD_REQUEST, "the JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise HmtError(errors.BAD_REQUEST, "the JSON is not valid UTF-8") from None
    except ValueError:
        # Integers longer than sys.get_int_max_str_digits() (4,300 digits), which no field of ours needs.
        raise HmtError(errors.BAD_REQUEST, "a number in the JSON is too long") from None
