"""Rate limits a connector asks the core for (`ctx.rate_limiter()`), shared by every
instance of the gateway when the core has Redis (gateway/coord/ratelimit.py), else kept in
this process (`LocalRateLimiter`, here). Two shapes:

- `window`: at most `limit` events in any `seconds` (a sliding window), e.g. a chat
  visitor's messages per minute;
- `reserve`: a token bucket kept as its theoretical arrival time (GCRA), `rate` a second
  with bursts of `burst`; the caller waits the returned delay (Telegram's flood limits).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class RateLimiter(Protocol):
    async def window(self, key: str, limit: int, seconds: float) -> float:
        """Count one event of `key`; 0.0 when it is allowed (and counted), else the seconds
        until one would be (nothing counted)."""
        ...

    async def reserve(
        self, key: str, rate: float, burst: int = 1, max_wait: float | None = None
    ) -> float | None:
        """Take a token of `key`: the seconds to wait before acting on it, or None (nothing
        taken) when that would be more than `max_wait`."""
        ...

    async def pause(self, key: str, rate: float, seconds: float) -> None:
        """No token of `key` for `seconds` (the provider said retry after)."""
        ...


class LocalRateLimiter:
    """One process: the windows and buckets live here (bounded: idle ones are dropped)."""

    MAX_KEYS = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, collections.deque[float]] = {}
        self._tats: dict[str, float] = {}

    async def window(self, key: str, limit: int, seconds: float) -> float:
        now = self._clock()
        events = self._windows.get(key)
        if events is None:
            self._trim(self._windows, lambda w: not w or w[-1] < now - 3600)
            events = self._windows[key] = collections.deque()
        while events and now - events[0] >= seconds:
            events.popleft()
        if len(events) >= limit:
            return max(0.001, seconds - (now - events[0]))
        events.append(now)
        return 0.0

    async def reserve(
        self, key: str, rate: float, burst: int = 1, max_wait: float | None = None
    ) -> float | None:
        now = self._clock()
        interval = 1.0 / rate
        if key not in self._tats:
            self._trim(self._tats, lambda tat: tat < now)
        tat = max(self._tats.get(key, now), now)
        delay = max(0.0, tat - (burst - 1) * interval - now)
        if max_wait is not None and delay > max_wait:
            return None
        self._tats[key] = tat + interval
        return delay

    async def pause(self, key: str, rate: float, seconds: float) -> None:
        self._tats[key] = max(self._tats.get(key, 0.0), self._clock() + seconds)

    def _trim(self, table: dict[str, _T], idle: Callable[[_T], bool]) -> None:
        if len(table) >= self.MAX_KEYS:
            for k in [k for k, v in table.items() if idle(v)]:
                del table[k]
