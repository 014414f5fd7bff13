"""Plans: a chat request is one job with its own prompt, options and key; any job's prompt can be continued from a
partial output (fail-over, adoption). The real tokenizer of the demo model counts the tokens."""

from __future__ import annotations

import pytest

from hmt_stream.cache import PhraseCache
from hmt_stream.chat import ChatRequest
from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.base import Message
from hmt_stream.engine.transformers import LocalEngine
from hmt_stream.errors import HmtError
from hmt_stream.plan import Planner
from hmt_stream.prompts import HY_MT15
from hmt_stream.request import TranslationRequest

SERVER = GenerationOptions(max_new_tokens=64, temperature=0.7)
PROMPT = ChatPrompt((Message("system", "Answer in French."), Message("user", "  Good morning  ")))


def planner_for(engine: LocalEngine, *, max_input_tokens: int = 2048) -> Planner:
    return Planner(engine, HY_MT15, PhraseCache(100, 60), segment_tokens=16, max_input_tokens=max_input_tokens)


def test_a_chat_request_is_one_verbatim_job_with_its_own_prompt_options_and_key(engine: LocalEngine) -> None:
    planner = planner_for(engine)
    chat = ChatRequest(PROMPT, (("max_new_tokens", 500), ("seed", 3), ("stop", ("\n",))))
    plan = planner.plan(chat, SERVER)
    [job] = plan.jobs
    assert job.chat == PROMPT and plan.verbatim and plan.kept == ["", ""]
    assert plan.options == GenerationOptions(max_new_tokens=64, temperature=0.7, seed=3, stop=("\n",))
    assert job.prompt_tokens == plan.prompt_tokens == engine.prompt_tokens(PROMPT)
    # The key covers the whole prompt, exactly, and the options: any difference is another entry.
    other_seed = planner.plan(ChatRequest(PROMPT, (("seed", 4),)), SERVER).jobs[0].key
    spaced = ChatPrompt((PROMPT.messages[0], Message("user", "Good morning")))
    assert len({job.key, other_seed, planner.plan(ChatRequest(spaced), SERVER).jobs[0].key}) == 3
    # A translation is not verbatim, and runs with the server's options.
    translation = planner.plan(TranslationRequest("Good morning.", "en", "fr"), SERVER)
    assert not translation.verbatim and translation.options == SERVER


def test_a_chat_prompt_over_max_input_tokens_is_refused(engine: LocalEngine) -> None:
    with pytest.raises(HmtError) as refused:
        planner_for(engine, max_input_tokens=16).plan(ChatRequest(ChatPrompt.user("word " * 40)), SERVER)
    assert refused.value.code == "too_long"


def test_a_segment_of_a_document_is_continued_from_its_partial_output(engine: LocalEngine) -> None:
    planner = planner_for(engine)
    text = "\n\n".join(f"Paragraph {n}. The north wind and the sun argued about their strength." for n in range(3))
    request = TranslationRequest(text, "en", "fr", format="markdown", context="A fable.")
    plan = planner.plan(request, SERVER)
    assert len(plan.jobs) >= 3
    second = plan.jobs[1]
    continued = planner.prompt_for(request, "Le vent du", segment=1)
    # The segment's own prompt (its template, context and all), with the partial text as the open answer.
    assert continued.messages == (*second.chat.messages, Message("assistant", "Le vent du"))
    assert continued.continue_final_message and not continued.add_generation_prompt
    assert planner.prompt_for(request, segment=1) == second.chat  # nothing generated yet: the prompt itself
    assert engine.prompt_tokens(continued) > second.prompt_tokens
    # Continued again from a longer partial: still one assistant message, never two.
    again = planner.prompt_for(request, "Le vent du nord", segment=1)
    assert again.messages[-1] == Message("assistant", "Le vent du nord") and len(again.messages) == 2


def test_a_chat_request_is_continued_from_its_partial_output(engine: LocalEngine) -> None:
    planner = planner_for(engine)
    assert planner.prompt_for(ChatRequest(PROMPT), "Bonjour") == PROMPT.continued("Bonjour")
    open_answer = ChatPrompt((*PROMPT.messages, Message("assistant", "Bon")), add_generation_prompt=False,
                             continue_final_message=True)
    assert planner.prompt_for(ChatRequest(open_answer), "jour").messages[-1] == Message("assistant", "Bonjour")
