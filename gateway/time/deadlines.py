"""Time-driven work: deadlines are data, not timers in memory.

Everything that happens because time passed — an SLA that breaches, an escalation step, an
offer that times out, a survey that falls due — is a pure function of stamps the store
keeps and of `now`. A `DeadlineSource` answers two questions: when is the next thing due
(`next_due`, read from the store), and do what is due now (`fire`). `fire` commits through
the one commit path with conditional updates (`... WHERE breached_at IS NULL`), so it acts
once even when two processes fire at the same instant, and a restart fires whatever fell
due while the process was down: nothing is held only in memory, a kill -9 loses nothing.

`Deadlines` is the one loop that runs the sources: it sleeps until the earliest due time,
a committed event (stamps may have moved), or `max_sleep` (so a wall clock that jumps —
an NTP step, a test that moves time — is noticed within that bound), and fires what is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from gateway.coord.leases import Lease
from gateway.eventloop import stop_tasks

log = logging.getLogger("switchboard.deadlines")


class DeadlineSource(Protocol):
    """One kind of time-driven work (e.g. SLA breaches, offer timeouts)."""

    name: str
    # Committed event types that may move this source's deadlines (they wake the loop).
    wake_on: frozenset[str]

    async def next_due(self, now: float) -> float | None:
        """The earliest epoch second at which something of this kind is due (may be in
        the past), or None when nothing is pending."""
        ...

    async def fire(self, now: float) -> None:
        """Do what is due at `now`; idempotent (conditional updates in the store)."""
        ...


class Deadlines:
    def __init__(self, clock: Callable[[], float] = time.time, max_sleep: float = 5.0) -> None:
        self.clock = clock
        self.max_sleep = max_sleep
        self._sources: list[DeadlineSource] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._failing: dict[str, float] = {}
        # Several instances: the holder of this lease runs the timers (issue 11); the
        # others wait to take over. None: this instance runs them.
        self.lease: Lease | None = None

    def add(self, source: DeadlineSource) -> None:
        self._sources.append(source)

    def on_event(self, event_type: str) -> None:
        """Bus listener: wake when a committed event may move some source's deadline."""
        if any(event_type in source.wake_on for source in self._sources):
            self._wake.set()

    def poke(self) -> None:
        """Something changed that may move a deadline: look again now."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deadlines")

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_tasks([self._task], timeout, "deadlines")
            self._task = None
        if self.lease is not None:
            await self.lease.release()

    async def run_once(self) -> float | None:
        """Fire every source that is due; the earliest future due time (None: nothing)."""
        now = self.clock()
        earliest: float | None = None
        for source in self._sources:
            try:
                due = await source.next_due(now)
                if due is not None and due <= now:
                    await source.fire(now)
                    due = await source.next_due(self.clock())
                self._failing.pop(source.name, None)
            except Exception:
                # Logged once a minute per source: a broken source must not fill the log,
                # nor stop the others; it is tried again at the next wake-up.
                last = self._failing.get(source.name)
                if last is None or now - last >= 60:
                    self._failing[source.name] = now
                    log.exception("deadline source failed", extra={"source": source.name})
                continue
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if self.lease is not None and not await self.lease.try_acquire():
                # another instance runs the timers: ask again soon
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.lease.retry):
                        while not self._stopping:
                            self._wake.clear()
                            await self._wake.wait()
                continue
            earliest = await self.run_once()
            wait = self.max_sleep
            if earliest is not None:
                # A due time in the past after firing (a source that could not finish)
                # is retried after a short pause, not in a tight loop.
                wait = min(wait, max(earliest - self.clock(), 0.05))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
