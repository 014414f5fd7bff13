"""Where a session's log stops, for a replica that adopts it: the segments written whole, the one being written,
and its text so far, which the model is given as its own beginning to continue (ChatPrompt.continued)."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass

from .cache import Entry
from .plan import Plan
from .session import Event

# Stands for a segment already in the log: the run writes nothing more for it.
WRITTEN = Entry("")


@dataclass(frozen=True)
class Resumed:
    started: bool
    cursor: int  # segments written whole (the index of the one being written)
    partial: str  # the log's text since: that segment's (the document's text before it, then its translation)

    @classmethod
    def from_log(cls, log: Sequence[Event]) -> Resumed:
        started = any(event.type == "started" for event in log)
        cursor, parts = 0, list[str]()
        for event in log:
            if event.type == "progress":
                cursor, parts = event.data["done"], []
            elif event.type == "delta":
                parts.append(event.data["text"])
        return cls(started, cursor, "".join(parts))

    def plan(self, plan: Plan) -> Plan:
        """plan with the segments already written marked so, and the one being written continued from its text."""
        if not self.started:
            return plan
        jobs = list(plan.jobs)
        for index in range(min(self.cursor, len(jobs))):
            jobs[index] = dataclasses.replace(jobs[index], cached=WRITTEN)
        if self.cursor < len(jobs):
            job = jobs[self.cursor]
            jobs[self.cursor] = dataclasses.replace(job, cached=None, chat=job.continued(self.raw(plan)))
        return dataclasses.replace(plan, jobs=jobs)

    def raw(self, plan: Plan) -> str:
        """The model's own text of the segment being written: the log's, less the document's text before it.
        (A segment's inline markup, which the log holds restored, is not turned back into placeholders.)"""
        if self.cursor >= len(plan.jobs):
            return ""
        kept = plan.kept[self.cursor]
        text = self.partial[len(kept):] if self.partial.startswith(kept) else self.partial
        return html.unescape(text) if plan.escape else text

    def kept_written(self, plan: Plan) -> bool:
        """The document's text before the segment being written (after the last, at the end) is in the log."""
        index = min(self.cursor, len(plan.kept) - 1)
        return bool(plan.kept[index]) and self.partial.startswith(plan.kept[index])
