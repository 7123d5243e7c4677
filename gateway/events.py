"""In-process fan-out of committed events to live subscribers.

Events are durable in the store first; the bus only wakes subscribers. A subscriber that
falls too far behind is dropped (its queue overflows) and resumes with `?since=`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from gateway.model import Event

log = logging.getLogger("switchboard.events")


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.overflowed = False

    async def get(self) -> Event | None:
        """The next event, or None once the subscription was dropped or closed."""
        return await self.queue.get()

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

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, maxsize)
        if self._closed:
            sub.queue.put_nowait(None)  # shutting down: the stream ends at once
        else:
            self._subs.add(sub)
        return sub

    def listen(self, fn: Callable[[Event], None]) -> None:
        """Call `fn` synchronously for every published event (metrics, webhooks)."""
        self._listeners.append(fn)

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            for fn in self._listeners:
                try:
                    fn(event)
                except Exception:
                    log.exception("event listener failed", extra={"event_type": event.type})
            for sub in list(self._subs):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.overflowed = True
                    self._subs.discard(sub)
                    # Make room for the end marker so the reader wakes up and stops.
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.queue.put_nowait(None)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            self._subs.discard(sub)
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
