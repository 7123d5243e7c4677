"""Reading the store's event log from a cursor: what every consumer of events does.

The log is the truth (docs/eventlog.md). A consumer keeps a cursor (the id of the last
event it has taken), is woken by the in-process bus (or polls, for writers in other
processes), and reads the events after its cursor from the store. It never takes an event
from the bus, so it cannot miss one that was committed but not published here.

The ordering rule: an event's id is its place in commit order. The store assigns ids
inside the writing transaction, under the database's single write lock, so an id that a
reader has seen can never be followed by a commit with a lower one. A reader still
defends itself against a backend that breaks the rule (ids drawn before the commit, as a
PostgreSQL sequence draws them): when the ids after its cursor have a hole, it takes the
events before the hole, holds back the rest, and reads again until the hole closes — an
event that commits late with a lower id is then delivered in order, once. A hole still
open after `gap_wait` seconds is an id that was rolled back; it is passed. A hole at or
below the pruning watermark is the retention's doing: the reader's cursor fell off the
log, and `CursorExpired` says where the log starts now.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.model import Event
from gateway.store.base import Store

# How long a reader waits for a hole in the ids to fill before it passes it.
GAP_WAIT = 2.0
# How often a reader looks at the log when nothing woke it (writers in other processes).
POLL_INTERVAL = 2.0


class CursorExpired(Exception):
    """The events right after the cursor were pruned: the log starts at `oldest` now."""

    def __init__(self, cursor: int, oldest: int) -> None:
        super().__init__(f"event {cursor + 1} is no longer kept; the oldest is {oldest}")
        self.cursor = cursor
        self.oldest = oldest


async def check_cursor(store: Store, cursor: int) -> None:
    """Raise `CursorExpired` when events after `cursor` have been pruned."""
    pruned = await store.events_pruned_through()
    if cursor < pruned:
        raise CursorExpired(cursor, pruned + 1)


class LogReader:
    """The events after a cursor, in id order, none skipped, none twice."""

    def __init__(
        self,
        store: Store,
        cursor: int,
        gap_wait: float = GAP_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cursor = cursor
        self.gap_wait = gap_wait
        self.clock = clock
        self._held_since: float | None = None  # when a hole after the cursor was first seen

    @property
    def holding(self) -> bool:
        """Events are held back behind a hole: read again soon, even if nothing wakes us."""
        return self._held_since is not None

    async def read(self, limit: int = 500) -> list[Event]:
        """The next events after the cursor (at most `limit`), advancing the cursor.

        Raises `CursorExpired` when the events right after the cursor were pruned."""
        batch = await self.store.events_since(self.cursor, limit)
        out: list[Event] = []
        for event in batch:
            if event.id != self.cursor + 1 and not await self._pass_hole():
                break
            out.append(event)
            self.cursor = event.id
            self._held_since = None
        return out

    async def _pass_hole(self) -> bool:
        """A hole after the cursor: pass it (True) or hold back until it fills (False)."""
        await check_cursor(self.store, self.cursor)
        now = self.clock()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since >= self.gap_wait
