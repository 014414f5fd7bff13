"""Admission: at most max_concurrent generations, a bounded wait queue, positions reported as it moves.

Each session waits in a lane of its own (a document's segments share one). A free slot goes to the waiting lane that
holds the fewest slots, the longest-unserved first: a one-sentence request behind a 300-segment document waits for
one of the document's segments, not for all of them. One client (owner) may have at most max_per_owner sessions
running or waiting, its fair share, whatever their segments."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Callable

from . import errors
from .errors import HmtError

PositionCallback = Callable[[int], object]


class Ticket:
    """One slot for one generation: either holding it already or waiting in its lane for it."""

    def __init__(self, scheduler: Scheduler, lane: Lane) -> None:
        self._scheduler = scheduler
        self.lane = lane
        self.granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._released = False

    @property
    def position(self) -> int:
        return self.lane.position

    @property
    def on_position(self) -> PositionCallback:
        return self.lane.on_position

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


class Lane:
    """One session's place in line; position 1 is next. Its tickets are served one turn at a time."""

    def __init__(self, scheduler: Scheduler, on_position: PositionCallback, turn: int,
                 owner: str | None = None) -> None:
        self._scheduler = scheduler
        self.on_position = on_position
        self.owner = owner  # the client whose fair share this lane counts against
        self.waiting: deque[Ticket] = deque()
        self.held = 0
        self.turn = turn  # when it last gave a slot back (or arrived): the longest-waiting lane goes first
        self.served = False
        self.position = 0
        self.closed = False  # set by close(), or by the release of a one-ticket lane's ticket

    def admit(self) -> Ticket:
        """A ticket in this lane (the lane already has its place: no overload check)."""
        ticket = Ticket(self._scheduler, self)
        self.waiting.append(ticket)
        self._scheduler._dispatch()
        return ticket

    def close(self) -> None:
        """Leave the line: tickets still waiting are dropped (their wait() never returns); the lane is gone once
        its last slot is released."""
        self.closed = True
        for ticket in list(self.waiting):
            ticket.release()
        self._scheduler._forget(self)


class Scheduler:
    def __init__(self, max_concurrent: int, max_queue: int, *, retry_after_s: float = 2.0,
                 max_per_owner: int = 0) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.max_per_owner = max_per_owner  # 0: no cap
        self.running = 0
        self._lanes: list[Lane] = []
        self._turns = itertools.count()
        self._owned: Counter[str] = Counter()  # lanes (sessions running or waiting) by owner

    @property
    def queued(self) -> int:
        """Generations waiting for a slot."""
        return sum(len(lane.waiting) for lane in self._lanes)

    @property
    def _in_line(self) -> int:
        """Sessions that have not started yet (a document that has started no longer takes a place in line)."""
        return sum(1 for lane in self._lanes if not lane.served)

    def lane(self, on_position: PositionCallback, owner: str | None = None) -> Lane:
        """A place in line for one session; raises `overloaded` when the line is full, or when owner already has
        its share (max_per_owner) of sessions running or waiting. A session counts once, however many segments
        it has: the share is of sessions, as the line's places are."""
        if self.running >= self.max_concurrent and self._in_line >= self.max_queue:
            raise HmtError(errors.OVERLOADED,
                           f"the server is busy: {self.running} running and {self.queued} waiting",
                           retry_after=self.retry_after_s)
        if owner is not None and self.max_per_owner and self._owned[owner] >= self.max_per_owner:
            raise HmtError(errors.OVERLOADED, f"you already have {self._owned[owner]} translations running or "
                                              f"waiting, your share of this server; wait for one to finish",
                           retry_after=self.retry_after_s)
        lane = Lane(self, on_position, next(self._turns), owner)
        self._lanes.append(lane)
        if owner is not None:
            self._owned[owner] += 1
        return lane

    def admit(self, on_position: PositionCallback, owner: str | None = None) -> Ticket:
        """A ticket in a lane of its own, which it leaves when released."""
        lane = self.lane(on_position, owner)
        ticket = lane.admit()
        lane.closed = True
        return ticket

    def _leave(self, ticket: Ticket) -> None:
        lane = ticket.lane
        if ticket in lane.waiting:
            lane.waiting.remove(ticket)
        elif ticket.granted.done():
            self.running -= 1
            lane.held -= 1
            lane.turn = next(self._turns)  # it has had its turn: lanes that waited meanwhile go first
        if lane.closed:
            self._forget(lane)
        self._dispatch()

    def _forget(self, lane: Lane) -> None:
        if lane in self._lanes and not lane.waiting and lane.held == 0:
            self._lanes.remove(lane)
            if lane.owner is not None:
                self._owned[lane.owner] -= 1
                if not self._owned[lane.owner]:
                    del self._owned[lane.owner]
            self._dispatch()

    def _dispatch(self) -> None:
        while self.running < self.max_concurrent:
            ready = [lane for lane in self._lanes if lane.waiting]
            if not ready:
                break
            lane = min(ready, key=lambda lane: (lane.held, lane.turn))
            ticket = lane.waiting.popleft()
            self.running += 1
            lane.held += 1
            lane.served = True
            ticket.granted.set_result(None)
        self._report_positions()

    def _report_positions(self) -> None:
        ready = sorted((lane for lane in self._lanes if lane.waiting or not lane.served),
                       key=lambda lane: (lane.held, lane.turn))
        for index, lane in enumerate(ready, start=1):
            if not lane.served and lane.position != index:
                lane.position = index
                lane.on_position(index)
