"""Engines: the interface, the real transformers engines (batched or a thread each), and the demo checkpoint."""

from __future__ import annotations

from ..config import Settings
from .base import ChatPrompt, Engine, Generation, GenerationOptions, Message
from .demo import build_demo_model, is_demo_checkpoint

DEMO = "demo"

__all__ = ["DEMO", "ChatPrompt", "Engine", "Generation", "GenerationOptions", "Message", "load_engine",
           "max_concurrent", "options_from"]


def options_from(settings: Settings) -> GenerationOptions:
    g = settings.generation
    return GenerationOptions(max_new_tokens=g.max_new_tokens, top_k=g.top_k, top_p=g.top_p,
                             temperature=g.temperature, repetition_penalty=g.repetition_penalty)


def load_engine(settings: Settings) -> Engine:
    """The configured engine, loaded (blocking: call it off the event loop): remote servers when
    remote.endpoints names any, else the model in this process (batched unless model.batching is false)."""
    if settings.remote.endpoints:
        from .remote import RemoteEngine

        return RemoteEngine.load(settings)
    from .batched import BatchedEngine
    from .transformers import TransformersEngine

    m = settings.model
    path = str(build_demo_model(m.demo_dir)) if m.name == DEMO else m.name
    demo = m.name == DEMO or is_demo_checkpoint(path)
    if m.batching:
        return BatchedEngine.load(
            path, model_id=m.name, demo=demo, device=m.device, dtype=m.dtype, load_in_8bit=m.load_in_8bit,
            revision=m.revision, local_files_only=m.local_files_only, max_batch=settings.scheduler.max_concurrent,
            max_tokens=settings.generation.max_input_tokens + settings.generation.max_new_tokens,
        )
    return TransformersEngine.load(
        path, model_id=m.name, demo=demo, device=m.device, dtype=m.dtype, load_in_8bit=m.load_in_8bit,
        revision=m.revision, local_files_only=m.local_files_only,
        workers=max(settings.generation.workers, settings.scheduler.max_concurrent),
    )


def max_concurrent(settings: Settings, engine: Engine) -> int:
    """scheduler.max_concurrent, with 0 (auto) resolved: the batch size of an engine that batches, else 1."""
    return settings.scheduler.max_concurrent or int(getattr(engine, "max_batch", 1))
