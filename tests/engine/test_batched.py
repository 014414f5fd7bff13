"""BatchedEngine on the demo model: one decode loop, every generation in it, each as if it ran alone."""

import asyncio

import pytest

from hmt_stream.engine import ChatPrompt, GenerationOptions
from hmt_stream.engine.batched import BatchedGeneration
from hmt_stream.engine.sampling import Sampler, distribution, penalise
from hmt_stream.engine.transformers import TransformersEngine
from hmt_stream.prompts import build_prompt

from .conftest import MakeBatched, read

TEXTS = ["Hi.", "Good morning, how are you today?", "The quick brown fox jumps over the lazy dog.",
         "Où est la gare ?", "今天天气很好，我们一起去公园散步吧。", "Hallo Welt, das ist ein Satz auf Deutsch.",
         "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in "
         "want of a wife. However little known the feelings or views of such a man may be on his first entering "
         "a neighbourhood, this truth is so well fixed in the minds of the surrounding families.",
         "Emoji 😀🎉 and accents: café naïve résumé"]
TARGETS = ["fr", "de", "zh", "en", "ja", "es", "fr", "ru"]


def prompt(i: int) -> ChatPrompt:
    return ChatPrompt.user(build_prompt(TEXTS[i], "en" if i != 4 else "zh", TARGETS[i]))


def greedy(tokens: int, penalty: float = 1.05) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=tokens, temperature=0.0, repetition_penalty=penalty)


@pytest.mark.parametrize("attention", ["per-row", "padded"])
async def test_eight_at_once_write_what_each_writes_alone(make_batched: MakeBatched, attention: str) -> None:
    """Token for token (ids as text), greedy, in float64 (see make_batched). The demo model's greedy answer is one
    token over and over unless a strong repetition penalty makes every step pick a token it has not used yet,
    which turns on the finest differences between scores: half the rows run with one."""
    # A small prefill chunk, so that the long prompt is read in pieces between the others' tokens.
    engine = make_batched(attention=attention, prefill_chunk=16, ids=True)
    options = [greedy(12 + 7 * i, penalty=(1.05, 3.0, 10.0, 1.3)[i % 4]) for i in range(8)]
    cancelled = 3
    options[cancelled] = greedy(600, penalty=10.0)
    prompts = [prompt(i) for i in range(8)]
    assert max(engine.prompt_tokens(p) for p in prompts) > 3 * 16
    alone = [await read(engine.generate(p, o)) for p, o in zip(prompts, options, strict=True)]
    assert engine.peak_rows == 1 and alone[cancelled][1] == 600
    assert len({text for text, _ in alone}) == 8

    async def read_and_cancel(generation: BatchedGeneration) -> tuple[str, int]:
        deltas = []
        async for delta in generation:
            deltas.append(delta)
            if len(deltas) == 3:
                generation.cancel()
        await generation.wait_closed()
        return "".join(deltas), generation.tokens

    generations = [engine.generate(p, o) for p, o in zip(prompts, options, strict=True)]
    together = await asyncio.gather(*(read_and_cancel(g) if i == cancelled else read(g)
                                      for i, g in enumerate(generations)))
    assert engine.peak_rows == 8
    for i in range(8):
        if i == cancelled:
            text, tokens = together[i]
            assert 3 <= tokens < 600 and alone[i][0].startswith(text) and len(text) < len(alone[i][0])
        else:
            assert together[i] == alone[i], i
    # ... and it is what model.generate() writes (TransformersEngine, a thread each, on the same model).
    threads = TransformersEngine(engine.model, engine.tokenizer, model_id="demo", demo=True)
    try:
        for i in (1, 2, 6):
            assert await read(threads.generate(prompts[i], options[i])) == alone[i], i
    finally:
        await threads.close()


async def test_a_newcomer_joins_at_the_next_step_and_its_long_prompt_does_not_stall_the_others(
        make_batched: MakeBatched) -> None:
    engine = make_batched(prefill_chunk=8)
    running = engine.generate(prompt(1), greedy(3000))
    reader = asyncio.create_task(read(running))
    while running.tokens < 5:
        await asyncio.sleep(0.001)
    long_prompt = prompt(6)
    chunks = -(-engine.prompt_tokens(long_prompt) // 8)
    assert chunks >= 8
    before = running.tokens
    newcomer = engine.generate(long_prompt, greedy(5))
    while newcomer.tokens == 0:
        await asyncio.sleep(0.001)
    # The running row had a token from every step that read a piece of the newcomer's prompt.
    assert running.tokens - before >= chunks, (running.tokens - before, chunks)
    await read(newcomer)
    assert running.tokens < 3000  # the newcomer was done long before the one that came first
    running.cancel()
    await reader


async def test_cancel_stops_within_one_step_and_the_slot_goes_to_the_next_in_line(
        make_batched: MakeBatched) -> None:
    engine = make_batched(max_batch=1)
    first = engine.generate(prompt(0), greedy(2000))
    second = engine.generate(prompt(1), greedy(10))
    seen = 0
    async for _ in first:
        seen += 1
        if seen == 3:
            at_cancel = first.tokens
            assert second.tokens == 0  # it waits for the one slot
            first.cancel()
    await asyncio.wait_for(first.wait_closed(), 10)
    assert first.tokens - at_cancel <= 1, (at_cancel, first.tokens)
    _, tokens = await asyncio.wait_for(read(second), 10)
    assert 1 <= tokens <= 10
    assert engine.peak_rows == 1


async def test_each_row_keeps_its_own_options(make_batched: MakeBatched) -> None:
    engine = make_batched()
    lengths = [3, 9, 17]
    options = [greedy(n) for n in lengths] + [GenerationOptions(max_new_tokens=11, temperature=0.7)]
    results = await asyncio.gather(*(read(engine.generate(prompt(i), o)) for i, o in enumerate(options)))
    assert [tokens for _, tokens in results] == [*lengths, 11]  # the demo model's greedy answers run long


def test_the_penalty_is_transformers_repetition_penalty() -> None:
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(1)
    scores = torch.randn(3, 50)
    history = torch.tensor([[1, 2, 2, 7], [0, 49, 3, 3], [5, 5, 5, 5]])
    seen = torch.zeros(3, 50, dtype=torch.bool)
    seen[torch.arange(3)[:, None], history] = True
    expected = RepetitionPenaltyLogitsProcessor(1.3)(history, scores.clone())
    assert torch.equal(penalise(scores, seen, 1.3), expected)


def test_drawing_among_the_top_k_is_drawing_from_generate_s_distribution() -> None:
    import torch
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(2)
    scores = torch.randn(4, 300) * 3
    for options in (GenerationOptions(max_new_tokens=1),  # the model card's: 0.7, top-k 20, top-p 0.6
                    GenerationOptions(max_new_tokens=1, temperature=1.3, top_k=50, top_p=0.95)):
        expected = scores.clone()
        for warper in (TemperatureLogitsWarper(options.temperature), TopKLogitsWarper(options.top_k),
                       TopPLogitsWarper(options.top_p)):
            expected = warper(None, expected)
        probs, ids = distribution(scores, options)
        assert ids is not None and probs.shape == ids.shape == (4, options.top_k)
        spread = torch.zeros_like(scores).scatter(1, ids, probs)
        assert torch.allclose(spread, torch.softmax(expected, dim=-1), atol=1e-6)
        assert (spread > 0).sum(dim=-1).min() >= 1 and (spread > 0).sum(dim=-1).max() < options.top_k
    whole, ids = distribution(scores, GenerationOptions(max_new_tokens=1, top_k=0, top_p=0.9))
    assert ids is None and whole.shape == scores.shape


def test_the_sampler_penalises_the_prompt_and_what_was_chosen_per_slot() -> None:
    import torch

    sampler = Sampler(slots=2, vocab_size=6, device="cpu")
    sampler.start(0, [1, 2])
    sampler.start(1, [5])
    # Token 1 leads, but slot 0 had it in its prompt: the penalty (halving) hands slot 0's choice to token 3.
    scores = torch.tensor([[0.0, 2.0, 0.1, 1.5, 0.0, 0.0], [0.0, 2.0, 0.1, 1.5, 0.0, 0.0]])
    options = [greedy(5, penalty=2.0)] * 2
    assert sampler.choose(scores, [0, 1], options, [None, None]) == [3, 1]
    # Now each slot is penalised for what it chose: slot 0 for 3 (1.5 → 0.75 < 1.0), slot 1 for 1 (2.0 → 1.0 < 1.5).
    assert sampler.choose(scores, [0, 1], options, [None, None]) == [1, 3]


async def test_a_seeded_request_draws_the_same_whatever_runs_beside_it(make_batched: MakeBatched) -> None:
    engine = make_batched()
    seeded = GenerationOptions(max_new_tokens=25, temperature=0.9, top_k=0, top_p=1.0, seed=1234)
    alone = await read(engine.generate(prompt(2), seeded))
    neighbours = [engine.generate(prompt(i), GenerationOptions(max_new_tokens=30, temperature=0.9))
                  for i in (0, 1, 5)]
    again = engine.generate(prompt(2), seeded)
    other_seed = engine.generate(prompt(2), GenerationOptions(max_new_tokens=25, temperature=0.9, top_k=0, top_p=1.0,
                                                              seed=99))
    results = await asyncio.gather(read(again), read(other_seed), *(read(g) for g in neighbours))
    assert engine.peak_rows >= 3
    assert results[0] == alone
    assert results[1] != alone


async def test_a_continued_prompt_goes_on_from_the_partial_answer(make_batched: MakeBatched) -> None:
    engine = make_batched()
    asked = prompt(2)
    continued = asked.continued("Le renard")
    threads = TransformersEngine(engine.model, engine.tokenizer, model_id="demo", demo=True)
    try:
        assert engine.prompt_ids(continued) == threads.prompt_ids(continued) != threads.prompt_ids(asked)
        expected = await read(threads.generate(continued, greedy(20)))
    finally:
        await threads.close()
    beside = engine.generate(asked, greedy(20))
    assert await read(engine.generate(continued, greedy(20))) == expected
    await read(beside)


async def test_a_failed_step_fails_its_generations_and_the_engine_serves_on(make_batched: MakeBatched) -> None:
    engine = make_batched()
    model = engine.model
    forward = model.forward

    def broken(*args: object, **kwargs: object) -> object:  # fault injection: one forward pass fails
        model.forward = forward
        raise RuntimeError("CUDA out of memory (injected)")

    failing = [engine.generate(prompt(i), greedy(100_000)) for i in range(2)]
    while not all(generation.tokens for generation in failing):
        await asyncio.sleep(0.001)
    model.forward = broken  # the next step holds both
    for generation in failing:
        with pytest.raises(RuntimeError, match="injected"):
            await read(generation)
    _, tokens = await read(engine.generate(prompt(0), greedy(10)))
    assert tokens == 10


async def test_close_ends_what_is_running_and_waiting(make_batched: MakeBatched) -> None:
    engine = make_batched(max_batch=1)
    running = engine.generate(prompt(0), greedy(100_000))
    waiting = engine.generate(prompt(1), greedy(10))
    async for _ in running:
        break
    await engine.close()
    for generation in (running, waiting):
        with pytest.raises(RuntimeError, match="engine has closed"):
            await read(generation)
    with pytest.raises(RuntimeError, match="engine has closed"):
        engine.generate(prompt(0), greedy(10))


async def test_defaults_follow_the_device(make_batched: MakeBatched) -> None:
    import torch

    threads = torch.get_num_threads()
    engine = make_batched(float64=False)
    assert (engine.max_batch, engine.prefill_chunk, engine.padded) == (8, 32, False)
    # The demo model's layers are too small to gain from packed or weight-first linears or from a second thread.
    assert engine.linears == "torch" and engine.one_thread
    await read(engine.generate(prompt(0), greedy(3)))
    assert torch.get_num_threads() == threads  # the decode thread's own setting stays its own



def test_the_auto_batch_on_cuda_is_what_the_cache_fits() -> None:
    import torch

    from bench.gpu import model_config
    from hmt_stream.engine.sizing import batch_that_fits, kv_bytes_per_token

    per_token = kv_bytes_per_token(model_config(tiny=False), torch.bfloat16)
    assert per_token == 128 * 1024  # Hunyuan-MT-7B: 2 × 32 layers × 8 KV heads × 128 × 2 bytes
    # 80 GB card: 64 of the longest translations (2,048 + 512 tokens) fit beside the weights; a 24 GB one, 20.
    assert batch_that_fits(63 * 10**9, per_token, 2560, 64) == 64
    assert batch_that_fits(int(7.6e9), per_token, 2560, 64) == 20
    assert batch_that_fits(10**6, per_token, 2560, 64) == 1


async def test_an_idle_engine_gives_its_cache_back(make_batched: MakeBatched) -> None:
    engine = make_batched()
    long = engine.generate(prompt(6), greedy(300))
    while long.tokens < 250:
        await asyncio.sleep(0.001)
    assert engine._cache.capacity >= engine.prompt_tokens(prompt(6)) + 250
    await read(long)
    for _ in range(1000):  # the loop clears it once it finds itself idle
        if engine._cache.capacity == 0:
            break
        await asyncio.sleep(0.01)
    assert engine._cache.capacity == 0
    _, tokens = await read(engine.generate(prompt(0), greedy(5)))
    assert tokens == 5
