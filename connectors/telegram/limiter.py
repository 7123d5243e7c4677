"""Telegram flood limits as token buckets: about one message a second per chat and thirty a
second overall. Waiting is `asyncio.sleep`, never blocking the loop. With several gateway
instances the buckets are shared (`shared`: the core's rate limiter, on Redis); the send
order per chat is kept by the local `turn`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from connectors.ratelimit import RateLimiter


class TokenBucket:
    """A token bucket kept as its theoretical arrival time (GCRA): `rate` tokens a second,
    up to `burst` at once. `reserve()` takes a token now and says how long to wait for it."""

    __slots__ = ("_clock", "_tat", "burst", "rate")

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tat = clock()

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def reserve(self) -> float:
        now = self._clock()
        tat = max(self._tat, now)
        delay = max(0.0, tat - (self.burst - 1) * self.interval - now)
        self._tat = tat + self.interval
        return delay

    def release(self) -> None:
        """Give back the last reservation (the caller did not send)."""
        self._tat -= self.interval

    def pause(self, seconds: float) -> None:
        """No token for `seconds` (Telegram said retry_after)."""
        self._tat = max(self._tat, self._clock() + seconds)

    def idle(self) -> bool:
        return self._tat <= self._clock()


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # senders holding or waiting for the lock


class FloodLimiter:
    def __init__(
        self,
        per_chat_rate: float = 1.0,
        global_rate: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        shared: RateLimiter | None = None,
    ) -> None:
        self._clock = clock
        self._shared = shared
        self._global_rate = global_rate
        self._per_chat_rate = per_chat_rate
        self._global = TokenBucket(global_rate, burst=max(1, int(global_rate)), clock=clock)
        self._chats: dict[Hashable, TokenBucket] = {}
        self._locks: dict[Hashable, _Turn] = {}

    def _bucket(self, chat: Hashable) -> TokenBucket:
        bucket = self._chats.get(chat)
        if bucket is None:
            if len(self._chats) > 1000:
                for key in [k for k, b in self._chats.items() if b.idle()]:
                    del self._chats[key]
            bucket = self._chats[chat] = TokenBucket(self._per_chat_rate, clock=self._clock)
        return bucket

    @asynccontextmanager
    async def turn(self, chat: Hashable) -> AsyncIterator[None]:
        """One send at a time per chat, in arrival order (so replies keep their order)."""
        entry = self._locks.get(chat)
        if entry is None:
            entry = self._locks[chat] = _Turn()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[chat]

    def reserve(self, chat: Hashable, max_wait: float | None = None) -> float | None:
        """Seconds to wait before sending to `chat`; None (nothing reserved) when that would
        exceed `max_wait`."""
        bucket = self._bucket(chat)
        delay = max(bucket.reserve(), self._global.reserve())
        if max_wait is not None and delay > max_wait:
            bucket.release()
            self._global.release()
            return None
        return delay

    def next_free(self, chat: Hashable) -> float:
        """Seconds until `chat` could send again (for a retry_after hint)."""
        bucket = self._bucket(chat)
        delay = bucket.reserve()
        bucket.release()
        return delay

    async def acquire(self, chat: Hashable, max_wait: float | None = None) -> bool:
        if self._shared is not None:
            return await self._acquire_shared(chat, max_wait)
        delay = self.reserve(chat, max_wait)
        if delay is None:
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def _acquire_shared(self, chat: Hashable, max_wait: float | None) -> bool:
        assert self._shared is not None
        per_chat = await self._shared.reserve(f"chat:{chat}", self._per_chat_rate, 1, max_wait)
        if per_chat is None:
            return False
        burst = max(1, int(self._global_rate))
        overall = await self._shared.reserve("global", self._global_rate, burst, max_wait)
        if overall is None:
            return False
        self._bucket(chat).reserve()  # the local estimate for `next_free`
        delay = max(per_chat, overall)
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    def pause(self, chat: Hashable, seconds: float) -> None:
        self._bucket(chat).pause(seconds)

    async def pause_everywhere(self, chat: Hashable, seconds: float) -> None:
        """`pause`, and for every instance when the buckets are shared."""
        self.pause(chat, seconds)
        if self._shared is not None:
            await self._shared.pause(f"chat:{chat}", self._per_chat_rate, seconds)
