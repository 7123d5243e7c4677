"""Work that must run once across instances, in process: each webhook endpoint's sender and
the timers (deadline sources) run on the holder of their lease only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import standardwebhooks

from gateway.coord.keys import Keys
from gateway.coord.leases import Leases, RedisLeases
from gateway.time.deadlines import Deadlines
from tests.gateway.conftest import SECRET, Receiver, base_config, wait_for


@pytest.fixture
async def leases_backend(redis_url: str) -> AsyncIterator[RedisLeases]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield RedisLeases(client, Keys("t"))
    await client.aclose()


class CountingSource:
    """A deadline source that is always due and counts who fired it."""

    name = "counting"
    wake_on: frozenset[str] = frozenset()

    def __init__(self, fired: list[str], who: str) -> None:
        self.fired, self.who = fired, who

    async def next_due(self, now: float) -> float | None:
        return now

    async def fire(self, now: float) -> None:
        self.fired.append(self.who)


async def test_one_instance_runs_the_timers_and_another_takes_over(
    leases_backend: RedisLeases,
) -> None:
    fired: list[str] = []
    loops = []
    for who in ("a", "b"):
        d = Deadlines(max_sleep=0.05)
        d.add(CountingSource(fired, who))
        d.lease = Leases(leases_backend, who, ttl=0.9, retry=0.1).lease("timers")
        loops.append(d)
        await d.start()
    try:
        await wait_for(lambda: len(fired) >= 10, timeout=5)
        await asyncio.sleep(0.5)
        assert len(set(fired)) == 1, "only the holder fires"
        holder = fired[0]
        first = next(d for d, who in zip(loops, "ab", strict=True) if who == holder)
        await first.stop()  # releases the lease: the other takes over at its next try
        count = len(fired)
        await wait_for(lambda: len(fired) > count + 5, timeout=3)
        assert set(fired[count:]) == {"b" if holder == "a" else "a"}
    finally:
        for d in loops:
            await d.stop()


async def test_each_webhook_event_is_sent_by_one_instance(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """Two instances on one PostgreSQL and one Redis: every event reaches the helpdesk once
    (without the lease both senders would post each one), in order; when the sending
    instance stops, the other one carries on from its cursor."""
    cfg = base_config(tmp_path / "unused.sqlite")
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    cfg["coordination"] = {"redis": redis_url}
    cfg["webhooks"] = [
        {
            "url": receiver.url,
            "secret": SECRET,
            "allow_private_networks": True,
            "events": ["message.received"],
        }
    ]
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    for i in range(6):
        await (a if i % 2 else b).inbound(f"h{i}", f"hello {i}", sender=f"c{i}")
    await wait_for(lambda: len(receiver.requests) >= 6, timeout=15)
    await asyncio.sleep(1.0)  # a second sender would have posted by now

    def delivered() -> list[int]:
        return [
            standardwebhooks.Webhook(SECRET).verify(raw, h)["id"] for h, raw in receiver.requests
        ]

    assert len(delivered()) == 6 and delivered() == sorted(set(delivered()))
    # the instance that sends stops; the other takes the endpoint over
    sending = next(
        gw for gw in (gw_a, gw_b) if any(e.lease and e.lease.held for e in gw.webhooks._endpoints)
    )
    survivor = b if sending is gw_a else a
    await sending.stop()
    for i in range(6, 9):
        await survivor.inbound(f"h{i}", f"hello {i}", sender=f"c{i}")
    await wait_for(lambda: len(receiver.requests) >= 9, timeout=15)
    await asyncio.sleep(0.5)
    assert len(delivered()) == 9 and delivered() == sorted(set(delivered()))
