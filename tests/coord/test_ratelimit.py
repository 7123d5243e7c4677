"""Rate limits shared by the gateway's instances on a real Redis (two clients: two
instances), and the in-process ones used without Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from connectors.ratelimit import LocalRateLimiter
from connectors.telegram.limiter import FloodLimiter
from gateway.coord.keys import Keys
from gateway.coord.ratelimit import RedisRateLimiter


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    a = aioredis.Redis.from_url(redis_url, decode_responses=True)
    b = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys("t")
    yield (
        RedisRateLimiter(a, keys).scoped("channel:chat:"),
        RedisRateLimiter(b, keys).scoped("channel:chat:"),
    )
    await a.aclose()
    await b.aclose()


async def test_a_visitors_per_minute_cap_counts_messages_on_every_instance(
    pair: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = pair
    for limiter in (a, b, a, b, a):
        assert await limiter.window("webchat:v1", 5, 60.0) == 0.0
    wait = await b.window("webchat:v1", 5, 60.0)
    assert 59.0 < wait <= 60.0  # the sixth in a minute, whichever instance it reaches
    assert await a.window("webchat:v1", 5, 60.0) > 59.0
    assert await a.window("webchat:v2", 5, 60.0) == 0.0  # another visitor: own window
    # the key carries the hash tag and the channel
    assert await a.client.exists("{t}:rate:channel:chat:webchat:v1")


async def test_a_window_frees_up_as_it_slides(
    pair: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = pair
    assert await a.window("w", 2, 0.5) == 0.0
    assert await b.window("w", 2, 0.5) == 0.0
    assert await a.window("w", 2, 0.5) > 0
    await asyncio.sleep(0.55)
    assert await b.window("w", 2, 0.5) == 0.0


async def test_token_buckets_are_shared(
    pair: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = pair
    delays = []
    for limiter in (a, b, a, b):
        delay = await limiter.reserve("chat:1", rate=10.0, burst=1)
        assert delay is not None
        delays.append(delay)
    # one token every 100 ms, whoever takes it: the fourth waits about 300 ms
    assert delays[0] == 0.0 and 0.25 <= delays[3] <= 0.31, delays
    assert await b.reserve("chat:1", rate=10.0, burst=1, max_wait=0.05) is None
    # a burst: 3 at once, then one per 100 ms
    burst = [await (a if i % 2 else b).reserve("all", 10.0, 3, None) for i in range(4)]
    assert burst[:3] == [0.0, 0.0, 0.0] and burst[3] is not None and burst[3] > 0.05


async def test_a_pause_reaches_every_instance(
    pair: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    a, b = pair
    await a.pause("chat:9", rate=1.0, seconds=5.0)
    delay = await b.reserve("chat:9", rate=1.0, burst=1)
    assert delay is not None and 4.5 < delay <= 5.0


async def test_telegram_flood_limits_hold_across_instances(
    pair: tuple[RedisRateLimiter, RedisRateLimiter],
) -> None:
    one = FloodLimiter(per_chat_rate=1.0, global_rate=30.0, shared=pair[0])
    two = FloodLimiter(per_chat_rate=1.0, global_rate=30.0, shared=pair[1])
    assert await one.acquire(42, max_wait=0.1)
    assert not await two.acquire(42, max_wait=0.1)  # the chat's token of this second is gone
    assert await two.acquire(43, max_wait=0.1)  # another chat is free
    started = time.monotonic()
    assert await two.acquire(42, max_wait=2.0)  # waits its turn
    assert time.monotonic() - started >= 0.8


def _unreachable() -> aioredis.Redis:
    """A client of a Redis that is not there, failing at once (no retries, as the
    gateway's client retries once at most)."""
    return aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )


async def test_redis_unreachable_falls_back_to_a_limit_per_instance() -> None:
    client = _unreachable()
    limiter = RedisRateLimiter(client, Keys("t"))
    assert await limiter.window("v", 2, 60.0) == 0.0
    assert await limiter.window("v", 2, 60.0) == 0.0
    assert await limiter.window("v", 2, 60.0) > 0  # still limited, by this instance alone
    assert await limiter.reserve("c", 0.01, 1, 0.1) == 0.0
    assert await limiter.reserve("c", 0.01, 1, 0.1) is None
    await client.aclose()


async def test_an_outage_is_logged_once_not_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every visitor message during a Redis outage asks the limiter: one warning when the
    shared limits are lost (and one line when they are back), not one per message."""
    client = _unreachable()
    limiter = RedisRateLimiter(client, Keys("t"))
    channel = limiter.scoped("channel:webchat:")
    with caplog.at_level(logging.INFO, logger="switchboard.coord.ratelimit"):
        for n in range(5):
            await limiter.window(f"v{n}", 10, 60.0)
            await channel.window(f"v{n}", 10, 60.0)
            await limiter.reserve(f"c{n}", 10.0, 1, 0.1)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    await client.aclose()


class _Health:
    """The gateway's RedisClient as the limiter sees it."""

    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy
        self.failures: list[BaseException | None] = []

    def report_failure(self, exc: BaseException | None = None) -> None:
        self.failures.append(exc)
        self.healthy = False


async def test_with_the_gateways_health_a_known_outage_skips_redis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the gateway knows Redis is down a message does not wait for Redis; a failure
    is reported to the gateway's client (which logs the outage), not logged again here."""
    health = _Health(healthy=True)
    limiter = RedisRateLimiter(_unreachable(), Keys("t"), health=health).scoped("portal:")
    with caplog.at_level(logging.INFO, logger="switchboard.coord.ratelimit"):
        assert await limiter.window("v", 1, 60.0) == 0.0  # tried Redis: failed, reported
        assert len(health.failures) == 1
        assert await limiter.window("v", 1, 60.0) > 0  # limited here, Redis not asked
        assert await limiter.reserve("c", 1.0, 1, 0.0) == 0.0
    assert len(health.failures) == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    await limiter.client.aclose()


async def test_local_limiter() -> None:
    now = [100.0]
    local = LocalRateLimiter(clock=lambda: now[0])
    assert [await local.window("v", 2, 60.0) for _ in range(2)] == [0.0, 0.0]
    assert await local.window("v", 2, 60.0) == 60.0
    now[0] += 30
    assert await local.window("v", 2, 60.0) == 30.0
    now[0] += 30
    assert await local.window("v", 2, 60.0) == 0.0
    assert await local.reserve("c", 2.0) == 0.0
    assert await local.reserve("c", 2.0) == 0.5
    assert await local.reserve("c", 2.0, max_wait=0.5) is None
    await local.pause("d", 1.0, 10.0)
    assert await local.reserve("d", 1.0) == 10.0
