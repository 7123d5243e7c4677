"""In-process wake-ups for readers of the event log, and live-only events.

Events are durable in the store first, and every consumer reads them from the store's log
from its own cursor (gateway/eventlog.py). The bus only wakes those readers: a stored
event published here is a hint that the log grew, never the thing a reader delivers. The
exception is live-only events (typing indicators, id 0), which are never stored: they
travel on the bus, and a reader too slow to take them loses the oldest ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable

from gateway.model import Event

log = logging.getLogger("switchboard.events")


class Subscription:
    def __init__(self, bus: EventBus, max_live: int) -> None:
        self._bus = bus
        self._wake = asyncio.Event()
        self._live: deque[Event] = deque(maxlen=max_live)
        self.closed = False

    def _notify(self, live: list[Event]) -> None:
        self._live.extend(live)
        self._wake.set()

    async def wait(self, timeout: float | None = None) -> list[Event] | None:
        """Wait until the log may have grown (or `timeout` passed); the live-only events
        that came meanwhile, or None once the bus closed."""
        if not self._wake.is_set() and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        self._wake.clear()
        if self.closed:
            return None
        live = list(self._live)
        self._live.clear()
        return live

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._closed = False
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, max_live: int = 1_000) -> Subscription:
        sub = Subscription(self, max_live)
        if self._closed:
            sub.closed = True  # shutting down: the stream ends at once
        else:
            self._subs.add(sub)
        return sub

    def listen(self, fn: Callable[[Event], None]) -> None:
        """Call `fn` synchronously for every published event (metrics, wake-ups)."""
        self._listeners.append(fn)

    def publish(self, events: Iterable[Event]) -> None:
        live: list[Event] = []
        any_event = False
        for event in events:
            any_event = True
            if not event.durable:
                live.append(event)
            for fn in self._listeners:
                try:
                    fn(event)
                except Exception:
                    log.exception("event listener failed", extra={"event_type": event.type})
        if any_event:
            for sub in list(self._subs):
                sub._notify(live)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            self._subs.discard(sub)
            sub.closed = True
            sub._wake.set()
