"""The segment plan of a request: the document cut into segments, each with its exact prompt and cache key, the
source language detected when asked for, and what the cache already holds. Built before a session exists.

A chat request (the OpenAI API's) is planned too: one job, its ready prompt sent as it is, with its own options and
cache key, and its output taken verbatim (nothing restored around it)."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Hashable
from dataclasses import dataclass

from . import errors
from .cache import Entry, PhraseCache
from .chat import ChatRequest, Request, chat_cache_key, options_for
from .documents import Segment, split
from .documents.detect import Detection, best
from .engine import ChatPrompt, Engine, GenerationOptions
from .errors import HmtError
from .languages import AUTO
from .prompts import Profile, Prompt, glossary_hits, render
from .request import TranslationRequest

DETECT_CHARS = 1000  # detection reads the start of the document's prose


# A chat request's job: no document segment and no template of ours (the prompt came ready).
CHAT_SEGMENT = Segment("")
CHAT_PROMPT = Prompt("chat", "")


@dataclass(frozen=True)
class Job:
    """One segment's work: the prompt it is sent with and, when the cache holds it, the model's earlier answer."""

    index: int
    segment: Segment
    prompt: Prompt
    glossary: tuple[tuple[str, str], ...]
    key: Hashable
    cached: Entry | None
    chat: ChatPrompt  # what the engine is sent: prompt.text as the user message, or a chat request's own prompt
    prompt_tokens: int

    def continued(self, partial: str) -> ChatPrompt:
        """The prompt that goes on from `partial`, this job's raw output so far (the model's text before it is
        restored into the document; what the cache keeps), instead of starting over."""
        return self.chat.continued(partial)


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]
    kept: list[str]  # kept[i]: the document's text just before segment i; kept[-1]: after the last one
    source: str  # the request's source, or the detected one for "auto" (still "auto" when nothing was found)
    detection: Detection | None
    escape: bool  # HTML: the model's text is escaped before it joins the markup
    options: GenerationOptions  # the server's, or a chat request's own on top of them
    verbatim: bool = False  # a chat request: the model's text is the answer as it comes (nothing trimmed or restored)

    @property
    def cached(self) -> int:
        return sum(job.cached is not None for job in self.jobs)

    @property
    def pending(self) -> list[Job]:
        return [job for job in self.jobs if job.cached is None]

    @property
    def prompt_tokens(self) -> int:
        return sum(job.prompt_tokens for job in self.jobs)


class Planner:
    """Builds plans for one engine and profile (pure work: no session, no scheduler)."""

    def __init__(self, engine: Engine, profile: Profile, cache: PhraseCache, *, segment_tokens: int,
                 max_input_tokens: int) -> None:
        self.engine = engine
        self.profile = profile
        self.cache = cache
        self.segment_tokens = segment_tokens
        self.max_input_tokens = max_input_tokens
        self._overhead: int | None = None

    def measure(self, text: str) -> int:
        """Tokens of text alone, as the model's tokenizer counts them inside a prompt."""
        if self._overhead is None:
            self._overhead = self.engine.prompt_tokens(ChatPrompt.user(""))
        return max(1, self.engine.prompt_tokens(ChatPrompt.user(text)) - self._overhead)

    def plan(self, request: Request, options: GenerationOptions, *, owner: str | None = None) -> Plan:
        """Raises `too_long` when a segment's prompt is over max_input_tokens. Touches no shared state but the
        engine's tokenizer, so it may run in a worker thread; look_up() then asks the cache, in owner's scope.
        `options` are the server's; a chat request's own go on top of them."""
        scope = self.cache.scope(owner)
        if isinstance(request, ChatRequest):
            return self._chat(request, options_for(request, options), scope)
        language = request.source if request.source != AUTO else "en"
        # Plain text is translated trimmed, as requests always were; a document keeps its outer line breaks.
        text = request.text.strip() if request.format == "text" else request.text
        parts = split(text, request.format, language=language, max_tokens=self.segment_tokens,
                      measure=self.measure)
        kept: list[str] = [""]
        segments: list[Segment] = []
        for part in parts:
            if isinstance(part, Segment):
                segments.append(part)
                kept.append("")
            else:
                kept[-1] += part
        detection = None
        source = request.source
        if source == AUTO and segments:
            detection = best(" ".join(segment.plain for segment in segments)[:DETECT_CHARS])
            source = detection.language if detection is not None else AUTO
        escape = request.format == "html"
        jobs = [self._job(index, segment, request, source, segments[index - 1] if index else None, escape, options,
                          scope) for index, segment in enumerate(segments)]
        return Plan(jobs, kept, source, detection, escape, options)

    def _chat(self, request: ChatRequest, options: GenerationOptions, scope: str | None) -> Plan:
        tokens = self._count(request.prompt, "the messages are")
        key = chat_cache_key(self.engine.model_id, request, options, scope)
        job = Job(0, CHAT_SEGMENT, CHAT_PROMPT, (), key, None, request.prompt, tokens)
        return Plan([job], ["", ""], AUTO, None, escape=False, options=options, verbatim=True)
    def _count(self, prompt: ChatPrompt, what: str) -> int:
        tokens = self.engine.prompt_tokens(prompt)
        if tokens > self.max_input_tokens:
            raise HmtError(errors.TOO_LONG, f"{what} {tokens} tokens with the prompt; the limit is "
                                            f"{self.max_input_tokens} (generation.max_input_tokens)")
        return tokens

    def prompt_for(self, request: Request, partial: str = "", *, segment: int = 0) -> ChatPrompt:
        """What the engine is asked for one segment of request (a chat request has one); with `partial`, that
        segment's raw output so far, the prompt that continues it instead of starting over (a replica adopting a
        session, for a local engine or a remote one). Plans the request again: a segment's prompt depends on the
        segments around it."""
        # Options shape cache keys, not prompts: the defaults do.
        return self.plan(request, GenerationOptions()).jobs[segment].continued(partial)

    def _job(self, index: int, segment: Segment, request: TranslationRequest, source: str,
             previous: Segment | None, escape: bool, options: GenerationOptions, scope: str | None) -> Job:
        text = html.unescape(segment.text) if escape else segment.text
        hits = tuple(glossary_hits(request.glossary, segment.plain))
        # The previous segment's source is context for documents (profiles trained for it), but not part of the
        # cache key: an edited paragraph does not make the next one's translation stale.
        automatic = previous.plain if previous is not None and self.profile.automatic_context else ""
        context = "\n".join(part for part in (request.context, automatic) if part.strip())
        prompt = render(self.profile, text, source, request.target, glossary=hits, context=context,
                        formatted=segment.formatted)
        keyed = render(self.profile, text, source, request.target, glossary=hits, context=request.context,
                       formatted=segment.formatted)
        chat = ChatPrompt.user(prompt.text)
        tokens = self._count(chat, f"segment {index + 1} is")
        key = self.cache.key(self.engine.model_id, source, request.target, keyed.text, options, scope)
        return Job(index, segment, prompt, hits, key, None, chat, tokens)

    def look_up(self, plan: Plan, *, dry_run: bool = False) -> Plan:
        """The plan with what the cache holds for each segment (a dry run counts no hits or misses)."""
        lookup = self.cache.peek if dry_run else self.cache.lookup
        return dataclasses.replace(plan, jobs=[dataclasses.replace(job, cached=lookup(job.key)) for job in plan.jobs])
