"""Admission: at most max_concurrent generations, a bounded wait queue, positions reported as it moves."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from . import errors
from .errors import HmtError

PositionCallback = Callable[[int], object]


class Ticket:
    """One admitted request: either holding a slot already or waiting in line for one."""

    def __init__(self, scheduler: Scheduler, on_position: PositionCallback, owner: str | None = None) -> None:
        self._scheduler = scheduler
        self.on_position = on_position
        self.owner = owner
        self.granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.position = 0
        self._released = False

    async def wait(self) -> None:
        """Wait for a slot; if cancelled while waiting, leave the line at once."""
        try:
            await asyncio.shield(self.granted)
        except asyncio.CancelledError:
            self.release()
            raise

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._scheduler._leave(self)


class Scheduler:
    def __init__(self, max_concurrent: int, max_queue: int, *, retry_after_s: float = 2.0,
                 max_per_owner: int = 0) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.max_per_owner = max_per_owner  # 0: no cap
        self.running = 0
        self._waiting: list[Ticket] = []
        self._held: Counter[str] = Counter()  # tickets running or waiting, by owner

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def admit(self, on_position: PositionCallback, owner: str | None = None) -> Ticket:
        """A ticket that holds a slot or a place in line; raises `overloaded` when the line is full, or when owner
        already holds its share (max_per_owner) of slots and places."""
        if self.running >= self.max_concurrent and len(self._waiting) >= self.max_queue:
            raise HmtError(errors.OVERLOADED,
                           f"the server is busy: {self.running} running and {len(self._waiting)} waiting",
                           retry_after=self.retry_after_s)
        if owner is not None and self.max_per_owner and self._held[owner] >= self.max_per_owner:
            raise HmtError(errors.OVERLOADED, f"you already have {self._held[owner]} translations running or "
                                              f"waiting, your share of this server; wait for one to finish",
                           retry_after=self.retry_after_s)
        ticket = Ticket(self, on_position, owner)
        if owner is not None:
            self._held[owner] += 1
        if self.running < self.max_concurrent and not self._waiting:
            self.running += 1
            ticket.granted.set_result(None)
        else:
            self._waiting.append(ticket)
            self._report_positions()
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        if ticket.owner is not None:
            self._held[ticket.owner] -= 1
            if not self._held[ticket.owner]:
                del self._held[ticket.owner]
        if ticket in self._waiting:
            self._waiting.remove(ticket)
        elif ticket.granted.done():
            self.running -= 1
        while self._waiting and self.running < self.max_concurrent:
            first = self._waiting.pop(0)
            self.running += 1
            first.granted.set_result(None)
        self._report_positions()

    def _report_positions(self) -> None:
        for index, ticket in enumerate(self._waiting, start=1):
            if ticket.position != index:
                ticket.position = index
                ticket.on_position(index)
