"""Where sessions live: this process's memory, or Redis shared by replicas (store.url)."""

from .base import SessionStore
from .memory import MemorySessionStore

__all__ = ["MemorySessionStore", "SessionStore"]
