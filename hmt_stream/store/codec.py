"""Requests and events as a shared store keeps them: JSON a replica can rebuild the plan from."""

from __future__ import annotations

import json
from typing import Any

from ..chat import ChatRequest, Request
from ..engine import ChatPrompt
from ..engine.base import Message
from ..request import TranslationRequest
from ..session import Event


def request_json(request: Request) -> str:
    if isinstance(request, ChatRequest):
        prompt = request.prompt
        body: dict[str, Any] = {
            "kind": "chat", "messages": [[m.role, m.content] for m in prompt.messages],
            "add_generation_prompt": prompt.add_generation_prompt,
            "continue_final_message": prompt.continue_final_message,
            "overrides": [list(pair) for pair in request.overrides]}
    else:
        body = {"kind": "translation", "text": request.text, "source": request.source, "target": request.target,
                "format": request.format, "glossary": [list(pair) for pair in request.glossary],
                "context": request.context}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def request_from_json(raw: str | bytes) -> Request:
    body = json.loads(raw)
    if body["kind"] == "chat":
        prompt = ChatPrompt(tuple(Message(role, content) for role, content in body["messages"]),
                            add_generation_prompt=body["add_generation_prompt"],
                            continue_final_message=body["continue_final_message"])
        # A stop list came as a JSON array: the options hold a tuple (hashable, part of the cache key).
        overrides = tuple((name, tuple(value) if isinstance(value, list) else value)
                          for name, value in body["overrides"])
        return ChatRequest(prompt, overrides)
    return TranslationRequest(text=body["text"], source=body["source"], target=body["target"],
                              format=body["format"], glossary=tuple((s, t) for s, t in body["glossary"]),
                              context=body["context"])


def event_from_json(raw: str | bytes) -> tuple[int, str, dict[str, Any]]:
    """(seq, type, data) of an event's JSON (Event.json)."""
    data = json.loads(raw)
    del data["session"]
    return data.pop("seq"), data.pop("type"), data


__all__ = ["Event", "event_from_json", "request_from_json", "request_json"]
