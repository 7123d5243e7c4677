"""Leases that keep working while Redis is down (issue 11).

`StoreBackedLeases` makes the store's lease row (gateway/store/leaserows.py, PostgreSQL with
the database server's clock) the arbiter of every holding, and Redis the fast path:

- Redis reachable (`RedisClient.healthy`): the token comes from Redis (`INCR`, as in
  `RedisLeases`) and the holding is then recorded in the store row in one transaction,
  which refuses it when another holder's row is still live (one taken while Redis was
  down, or by an instance that cannot reach Redis) or when the Redis token is not greater
  than every token the store has seen (Redis lost its counter, or the store issued tokens
  during an outage): Redis's counter is then moved past it and the next attempt, a second
  later, gets a valid token.
- Redis unreachable: the store row alone; its token is max(every token seen) + 1, so it is
  greater than any Redis issued before, and Redis is moved past it when it is back.

Renewals extend the store row (and the Redis hash, best effort), so a holder keeps its work
through a Redis outage instead of pausing it, and exactly one instance holds each lease
whichever of them can reach Redis. The cost: one small PostgreSQL write per lease renewal
(TTL/3, 2 s by default) on top of Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from connectors.egress import redact_urls
from gateway.coord.leases import Grant, LeaseBackend, RedisLeases
from gateway.store.leaserows import LeaseRows

log = logging.getLogger("switchboard.coord.leases")

T = TypeVar("T")

# The longest one Redis step may take before the store answers alone: a Redis that hangs
# (rather than refusing connections) must not make a renewal miss its TTL/3 deadline.
REDIS_STEP = 1.0


class Health(Protocol):
    """What the backend reads of the shared Redis client (gateway/coord/client.py)."""

    healthy: bool

    def report_failure(self, exc: BaseException | None = None) -> None: ...


class StoreBackedLeases(LeaseBackend):
    """Leases decided by the store's lease row, with Redis tokens while Redis is up."""

    def __init__(
        self, redis: RedisLeases, rows: LeaseRows, health: Health, step: float = REDIS_STEP
    ) -> None:
        self.redis, self.rows, self.health, self.step = redis, rows, health, step

    async def _bounded(self, call: Awaitable[T], ttl: float | None = None) -> T:
        """`call`, given at most `step` (and a sixth of the TTL: the renewal's deadline is a
        third, and the store's step has to fit in it too)."""
        async with asyncio.timeout(self.step if ttl is None else min(self.step, ttl / 6)):
            return await call

    async def _redis_acquire(self, name: str, holder: str, ttl: float) -> Grant | bool | None:
        """Redis's answer; False when Redis is (or just went) unreachable."""
        if not self.health.healthy:
            return False
        try:
            return await self._bounded(self.redis.acquire(name, holder, ttl), ttl)
        except Exception as exc:  # redis errors, OSError, timeouts: use the store
            self.health.report_failure(exc)
            return False

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | None:
        grant = await self._redis_acquire(name, holder, ttl)
        if grant is None:
            return None  # held by another instance, says Redis
        token = grant.token if isinstance(grant, Grant) else None
        taken, seen = await self.rows.lease_take(name, holder, ttl, token)
        if taken:
            return Grant(seen)
        if token is not None:
            # Redis granted what the store refuses: give the Redis hash back, and move its
            # counter past what the store has seen when that is why
            if token <= seen:
                log.info(
                    "lease token counter moved past the store's", extra={"lease": redact_urls(name)}
                )
            await self._quietly_redis(name, holder, token, floor=seen if token <= seen else None)
        return None

    async def _quietly_redis(self, name: str, holder: str, token: int, floor: int | None) -> None:
        try:
            if floor is not None:
                await self._bounded(self.redis.advance(name, floor))
            await self._bounded(self.redis.release(name, holder, token))
        except Exception as exc:
            self.health.report_failure(exc)

    async def renew(self, name: str, holder: str, token: int | None, ttl: float) -> bool:
        assert token is not None
        if not await self.rows.lease_renew(name, holder, token, ttl):
            return False
        if self.health.healthy:
            try:  # keeps the fast path answering "held"; the store row decides
                await self._bounded(self.redis.renew(name, holder, token, ttl), ttl)
            except Exception as exc:
                self.health.report_failure(exc)
        return True

    async def release(self, name: str, holder: str, token: int | None) -> None:
        assert token is not None
        await self.rows.lease_release(name, holder, token)
        if self.health.healthy:
            await self._quietly_redis(name, holder, token, floor=None)

    async def advance(self, name: str, floor: int) -> None:
        await self.rows.lease_advance(name, floor)
        if self.health.healthy:
            try:
                await self._bounded(self.redis.advance(name, floor))
            except Exception as exc:
                self.health.report_failure(exc)

    async def holder(self, name: str) -> tuple[str, int, float] | None:
        """(holder, token, seconds left by the database's clock) of a live holding."""
        row = await self.rows.lease_row(name)
        if row is None or row[0] is None or row[2] <= 0:
            return None
        return row[0], row[1], row[2]
