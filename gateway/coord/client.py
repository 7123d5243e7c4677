"""One shared Redis client per gateway instance, and whether Redis is reachable now.

`RedisClient.redis` is a `redis.asyncio.Redis` (decoded `str` replies) with short
timeouts and at most one quick retry, so a command fails within seconds when Redis is
gone instead of hanging the caller. A background loop pings every `interval`: it keeps
`healthy` up to date (callers may also `report_failure` when a command failed), tells the
`on_change` listeners about each transition, and logs one warning per `log_every` seconds
while Redis is down and one info line when it is back. Reconnecting is the client's own
(its pool opens new connections); the loop only notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from connectors.egress import redacted_url
from gateway.coord.keys import Keys

log = logging.getLogger("switchboard.coord")


class RedisClient:
    def __init__(
        self,
        url: str,
        keys: Keys | None = None,
        *,
        timeout: float = 2.0,
        interval: float = 1.0,
        log_every: float = 30.0,
        name: str = "switchboard",
    ) -> None:
        self.url = url
        self.keys = keys or Keys()
        self.interval = interval
        self.log_every = log_every
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            retry_on_timeout=False,
            health_check_interval=30,
            client_name=name,
        )
        self.healthy = False
        self.down_since: float | None = None
        self._on_change: list[Callable[[bool], None]] = []
        self._changed = asyncio.Event()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._stopping = False

    def on_change(self, fn: Callable[[bool], None]) -> None:
        """Call `fn(healthy)` on every transition (synchronously, from the loop)."""
        self._on_change.append(fn)

    async def start(self) -> None:
        """Ping once (so `healthy` is known before serving) and start the health loop.
        Never raises: a gateway starts while Redis is down and catches up later."""
        try:
            self.healthy = bool(await self.redis.ping())
        except (RedisError, OSError):
            self._went_down("unreachable at start")
        self._task = asyncio.create_task(self._loop(), name="redis-health")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            task, self._task = self._task, None
            # Python 3.11 can lose a cancellation that meets the loop's own timeout (seen:
            # stop() hanging for ever): ask again until the task is done.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def check(self) -> bool:
        """Ping now; update `healthy` (and tell the listeners) if it changed."""
        try:
            ok = bool(await self.redis.ping())
        except (RedisError, OSError):
            ok = False
        self._set(ok)
        return ok

    def report_failure(self, exc: BaseException | None = None) -> None:
        """A command failed: treat Redis as down now, the loop finds out when it is back."""
        if self.healthy:
            self._set(False, reason=type(exc).__name__ if exc is not None else None)
        self._poke.set()

    async def wait_healthy(self, timeout: float | None = None) -> bool:
        """Wait until Redis is reachable (or `timeout` passed); whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.healthy:
                    self._changed.clear()
                    await self._changed.wait()
        return self.healthy

    def _set(self, ok: bool, reason: str | None = None) -> None:
        if ok == self.healthy:
            return
        self.healthy = ok
        if ok:
            down_for = time.monotonic() - self.down_since if self.down_since else 0.0
            self.down_since = None
            log.info(
                "coordination: Redis reachable again",
                extra={"redis": redacted_url(self.url), "down_seconds": round(down_for, 1)},
            )
        else:
            self._went_down(reason or "ping failed")
        self._changed.set()
        for fn in list(self._on_change):
            try:
                fn(ok)
            except Exception:
                log.exception("Redis health listener failed")

    def _went_down(self, reason: str) -> None:
        self.healthy = False
        self.down_since = time.monotonic()
        self._last_warning = self.down_since
        log.warning(
            "coordination: Redis unreachable; polling the store instead",
            extra={"redis": redacted_url(self.url), "reason": reason},
        )

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poke.wait()
            self._poke.clear()
            await self.check()
            now = time.monotonic()
            if not self.healthy and now - self._last_warning >= self.log_every:
                self._last_warning = now
                log.warning(
                    "coordination: Redis still unreachable; polling the store",
                    extra={
                        "redis": redacted_url(self.url),
                        "down_seconds": round(now - (self.down_since or now), 1),
                    },
                )


__all__ = ["RedisClient"]
