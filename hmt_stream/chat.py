"""The requests a session can run: a translation, or a ready chat prompt (the OpenAI API's) with its own options.

Both are planned (plan.py) and run (runner.py) the same way; a chat prompt is one job, sent as it is."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from .engine import ChatPrompt, GenerationOptions
from .request import TranslationRequest

# GenerationOptions fields a chat request may set for itself.
OPTION_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationOptions))


@dataclass(frozen=True)
class ChatRequest:
    """A prompt that is sent as it is, with the sampling options its client chose (the rest are the server's)."""

    prompt: ChatPrompt
    overrides: tuple[tuple[str, Any], ...] = ()  # (GenerationOptions field, value): hashable, unlike a dict

    def __post_init__(self) -> None:
        unknown = {name for name, _ in self.overrides} - OPTION_FIELDS
        if unknown:
            raise ValueError(f"not generation options: {', '.join(sorted(unknown))}")

    def options(self, defaults: GenerationOptions) -> GenerationOptions:
        """The server's options with this request's on top; max_new_tokens never above the server's own limit."""
        values = dict(self.overrides)
        if "max_new_tokens" in values:
            values["max_new_tokens"] = min(values["max_new_tokens"], defaults.max_new_tokens)
        return dataclasses.replace(defaults, **values)

    @property
    def chars(self) -> int:
        return sum(len(message.content) for message in self.prompt.messages)


Request = TranslationRequest | ChatRequest


def options_for(request: Request, defaults: GenerationOptions) -> GenerationOptions:
    return request.options(defaults) if isinstance(request, ChatRequest) else defaults


def chat_cache_key(model_id: str, request: ChatRequest, options: GenerationOptions,
                   scope: str | None = None) -> Hashable:
    """The whole prompt, exactly (no normalising: every character of a chat prompt may matter), the options, and
    whose entry it is (PhraseCache.scope)."""
    return ("chat", model_id, request.prompt, options, scope)
