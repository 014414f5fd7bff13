"""OpenAI's chat completions wire format: the request decoded into a ChatRequest, and the bodies sent back.

Fields hmt-stream does not know are ignored, as OpenAI-compatible servers do; a known field of the wrong type is a
400 that names it. vLLM's `add_generation_prompt` / `continue_final_message` and `top_k` /
`repetition_penalty` are accepted beside OpenAI's own fields.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..chat import ChatRequest
from ..engine import ChatPrompt, Message
from ..errors import ErrorKind, HmtError
from ..request import _is_utf8

MODEL_NOT_FOUND = ErrorKind("model_not_found", 404, 1008)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ParamError(HmtError):
    """A 400 about one request field, which OpenAI's error body names in `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(errors.BAD_REQUEST, message)
        self.param = param


@dataclass(frozen=True)
class ChatCall:
    """One decoded POST /v1/chat/completions."""

    request: ChatRequest
    model: str
    stream: bool
    include_usage: bool


def _number(body: Mapping[str, Any], name: str, *, integer: bool, low: float | None = None,
            high: float | None = None) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ParamError(name, f"'{name}' must be {'an integer' if integer else 'a number'}, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ParamError(name, f"'{name}' must be {bounds}, not {value!r}")
    return value


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParamError(name, f"'{name}' must be true or false, not {value!r}")
    return value


def _content(value: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts of which only text parts are understood."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(part, Mapping) for part in value):
        if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in value):
            raise ParamError(where, f"'{where}' may hold only text parts ({{\"type\": \"text\", \"text\": ...}})")
        text = "".join(part["text"] for part in value)
    else:
        raise ParamError(where, f"'{where}' must be a string or a list of text parts")
    if not _is_utf8(text):
        raise ParamError(where, f"'{where}' contains lone UTF-16 surrogates, which are not characters")
    return text


def _messages(body: Mapping[str, Any]) -> tuple[Message, ...]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ParamError("messages", "'messages' must be a non-empty list of {role, content} objects")
    messages = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise ParamError(where, f"'{where}' must be an object with role and content")
        role = ROLES.get(item.get("role"))  # type: ignore[arg-type]  # any JSON value; unknown ones are None
        if role is None:
            raise ParamError(f"{where}.role", f"'{where}.role' must be one of {', '.join(ROLES)}, "
                                              f"not {item.get('role')!r}")
        messages.append(Message(role, _content(item.get("content"), f"{where}.content")))
    return tuple(messages)


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ParamError("stop", "'stop' must be a string or a list of strings")
    return tuple(item for item in value if item)


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    """The GenerationOptions fields the request sets (the server's settings fill in the rest)."""
    options: dict[str, Any] = {}
    max_tokens = _number(body, "max_completion_tokens", integer=True, low=1)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", integer=True, low=1)
    if max_tokens is not None:
        options["max_new_tokens"] = int(max_tokens)
    for name, field, low, high in (("temperature", "temperature", 0.0, 2.0), ("top_p", "top_p", 0.0, 1.0),
                                   ("repetition_penalty", "repetition_penalty", 0.01, None)):
        value = _number(body, name, integer=False, low=low, high=high)
        if value is not None:
            options[field] = float(value)
    top_k = _number(body, "top_k", integer=True, low=-1)
    if top_k is not None:
        options["top_k"] = max(0, int(top_k))  # vLLM's -1 and 0 both mean no top-k
    seed = _number(body, "seed", integer=True)
    if seed is not None:
        options["seed"] = int(seed)
    stop = _stop(body)
    if stop:
        options["stop"] = stop
    return options


def parse_chat(body: Any, *, default_model: str) -> ChatCall:
    """Decode a chat completions body, or raise HmtError (a ParamError for one field)."""
    if not isinstance(body, Mapping):
        raise HmtError(errors.BAD_REQUEST, "expected a JSON object with model and messages")
    model = body.get("model", default_model)
    if model is None:
        model = default_model
    if not isinstance(model, str):
        raise ParamError("model", "'model' must be a string")
    n = _number(body, "n", integer=True, low=1)
    if n not in (None, 1):
        raise ParamError("n", "only n = 1 is supported")
    if _flag(body, "logprobs", False):
        raise ParamError("logprobs", "logprobs are not supported")
    messages = _messages(body)
    continue_final = _flag(body, "continue_final_message", False)
    add_generation = _flag(body, "add_generation_prompt", not continue_final)
    if continue_final and add_generation:
        raise ParamError("continue_final_message", "continue_final_message and add_generation_prompt cannot "
                                                   "both be true")
    if continue_final and messages[-1].role != "assistant":
        raise ParamError("continue_final_message", "continue_final_message needs an assistant message last")
    stream = _flag(body, "stream", False)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, Mapping):
        raise ParamError("stream_options", "'stream_options' must be an object")
    include_usage = _flag(stream_options or {}, "include_usage", False)
    prompt = ChatPrompt(messages, add_generation_prompt=add_generation, continue_final_message=continue_final)
    request = ChatRequest(prompt, tuple(sorted(_options(body).items())))
    return ChatCall(request, model, stream, include_usage)


# -- what goes back ---------------------------------------------------------------------------------------------------

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_body(error: HmtError) -> dict[str, Any]:
    """OpenAI's error object; `code` is hmt-stream's stable code, `type` OpenAI's class of it."""
    status = error.kind.http_status
    return {"error": {"message": error.message, "type": _TYPES.get(status, "server_error"),
                      "param": getattr(error, "param", None), "code": error.code}}


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass(frozen=True)
class Chunks:
    """The chunks of one streamed completion, all with the same id, created and model."""

    id: str
    created: int
    model: str
    include_usage: bool

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": choices, **extra}
        if self.include_usage and "usage" not in body:
            body["usage"] = None
        return body

    def delta(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return self._chunk([], usage=usage(prompt_tokens, completion_tokens))


def completion(*, id: str, created: int, model: str, text: str, finish_reason: str, prompt_tokens: int,
               completion_tokens: int) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "hmt-stream"}
