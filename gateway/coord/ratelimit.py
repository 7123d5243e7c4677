"""Shared rate limits on Redis (connectors.ratelimit.RateLimiter for every instance at
once): Lua scripts, all time from the Redis server's clock (`TIME`).

- `window`: a sorted set of event times per key (a sliding window log), trimmed and
  counted in one script; expires with the window.
- `reserve`/`pause`: GCRA, the key holds the theoretical arrival time in ms.

A Redis error falls back to this instance's own `LocalRateLimiter` (a limit per instance
for a while is better than none, and better than refusing every message). An outage is
logged once, not once per message: with `health` (gateway/coord/client.py RedisClient) a
failure is reported to it (it logs the outage and its end) and, while it knows Redis is
down, the limiter does not wait for Redis at all; without it the limiter logs one warning
when the shared limits are lost and one line when they are back."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from connectors.ratelimit import LocalRateLimiter, RateLimiter
from gateway.coord.keys import Keys

log = logging.getLogger("switchboard.coord.ratelimit")

# The Redis server's clock in ms as `now` (prepended to every script that reads time).
SERVER_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] zset; ARGV[1] limit, ARGV[2] window ms, ARGV[3] unique member.
# Returns 0 (counted) or the ms until an event would be allowed.
_WINDOW = (
    SERVER_NOW_MS
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
)

# KEYS[1] tat; ARGV[1] interval ms, ARGV[2] burst, ARGV[3] max wait ms (-1: none).
# Returns the delay in ms, or -1 when it would exceed the max wait (nothing taken).
_RESERVE = (
    SERVER_NOW_MS
    + """
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local delay = tat - (tonumber(ARGV[2]) - 1) * interval - now
if delay < 0 then delay = 0 end
local max_wait = tonumber(ARGV[3])
if max_wait >= 0 and delay > max_wait then return -1 end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
return delay
"""
)

# KEYS[1] tat; ARGV[1] pause ms.
_PAUSE = (
    SERVER_NOW_MS
    + """
local until_ms = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < until_ms then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return 0
"""
)


class RedisRateLimiter:
    """Limits shared by all instances; keys `{prefix}:rate:<namespace><key>`."""

    def __init__(
        self,
        client: Any,
        keys: Keys | None = None,
        namespace: str = "",
        fallback: RateLimiter | None = None,
        health: Any | None = None,
        outage: _Outage | None = None,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.namespace = namespace
        self.fallback = fallback or LocalRateLimiter()
        self.health = health
        # Shared by the scoped limiters: one outage is one warning for all of them.
        self._outage = outage or _Outage()
        self._window = client.register_script(_WINDOW)
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)

    def scoped(self, namespace: str) -> RedisRateLimiter:
        """The same limiter with keys under `namespace` (one channel's)."""
        return RedisRateLimiter(
            self.client,
            self.keys,
            self.namespace + namespace,
            health=self.health,
            outage=self._outage,
        )

    def _key(self, key: str) -> str:
        return self.keys.rate(self.namespace + key)

    def _down(self) -> bool:
        """Redis is known to be down: use this instance's limits without waiting for it."""
        return self.health is not None and not self.health.healthy

    def _failed(self, exc: BaseException) -> None:
        if self.health is not None:
            self.health.report_failure(exc)  # it logs the outage once, and its end
        elif not self._outage.down:
            self._outage.down = True
            log.warning(
                "shared rate limits unavailable: limits per instance until Redis answers",
                extra={"error": type(exc).__name__},
            )
        log.debug("shared rate limit unavailable: %r", exc)

    def _answered(self) -> None:
        if self._outage.down:
            self._outage.down = False
            log.info("shared rate limits back")

    async def window(self, key: str, limit: int, seconds: float) -> float:
        if self._down():
            return await self.fallback.window(key, limit, seconds)
        try:
            ms = await self._window(
                keys=[self._key(key)], args=[limit, round(seconds * 1000), uuid.uuid4().hex]
            )
        except Exception as exc:
            self._failed(exc)
            return await self.fallback.window(key, limit, seconds)
        self._answered()
        return int(ms) / 1000.0

    async def reserve(
        self, key: str, rate: float, burst: int = 1, max_wait: float | None = None
    ) -> float | None:
        if self._down():
            return await self.fallback.reserve(key, rate, burst, max_wait)
        wait = -1 if max_wait is None else round(max_wait * 1000)
        try:
            ms = await self._reserve(keys=[self._key(key)], args=[1000.0 / rate, burst, wait])
        except Exception as exc:
            self._failed(exc)
            return await self.fallback.reserve(key, rate, burst, max_wait)
        self._answered()
        value = float(ms)
        return None if value < 0 else value / 1000.0

    async def pause(self, key: str, rate: float, seconds: float) -> None:
        if not self._down():
            try:
                await self._pause(keys=[self._key(key)], args=[round(seconds * 1000)])
            except Exception as exc:
                self._failed(exc)
            else:
                self._answered()
        await self.fallback.pause(key, rate, seconds)


class _Outage:
    """Whether the last call to Redis failed (for logging an outage once)."""

    __slots__ = ("down",)

    def __init__(self) -> None:
        self.down = False
