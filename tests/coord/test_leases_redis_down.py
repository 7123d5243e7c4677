"""Two gateways on one PostgreSQL with Redis killed (issue 11): the webhook sender and the
timers keep running, on exactly one instance; every event reaches the helpdesk once; a
stopped holder is taken over within seconds while Redis is still down; after Redis is back
still exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import standardwebhooks

from gateway.app import Gateway
from tests.gateway.conftest import SECRET, Client, Receiver, base_config, wait_for
from tests.redisserver import own_server

MakeGateway = Callable[..., Awaitable[tuple[Gateway, Client]]]


def holders(gateways: list[Gateway]) -> tuple[list[Gateway], list[Gateway]]:
    """(instances sending to the webhook endpoint, instances running the timers)."""
    senders = [g for g in gateways if any(e.lease and e.lease.held for e in g.webhooks._endpoints)]
    timers = [g for g in gateways if g.deadlines.lease is not None and g.deadlines.lease.held]
    return senders, timers


@pytest.mark.timeout(180)
async def test_leased_work_runs_once_while_redis_is_down(
    gateway_factory: MakeGateway, receiver: Receiver, tmp_path: Path, pg_dsn: str
) -> None:
    redis = own_server()
    try:
        cfg = base_config(tmp_path / "unused.sqlite")
        cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
        cfg["coordination"] = {"redis": redis.url, "prefix": "t2"}
        cfg["server"]["shutdown_timeout"] = 3
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
        gateways = [gw_a, gw_b]

        def delivered() -> list[int]:
            return [
                standardwebhooks.Webhook(SECRET).verify(raw, h)["id"]
                for h, raw in receiver.requests
            ]

        def once_in_order(n: int) -> bool:
            got = delivered()
            return len(got) == n and got == sorted(set(got))

        async def send(start: int, stop: int, via: list[Client]) -> None:
            for i in range(start, stop):
                status, body = await via[i % len(via)].inbound(f"h{i}", f"hi {i}", sender=f"c{i}")
                assert status == 202, body

        await send(0, 4, [a, b])
        await wait_for(lambda: len(receiver.requests) >= 4, timeout=15)

        redis.kill()
        await wait_for(lambda: not any(g.redis and g.redis.healthy for g in gateways), timeout=10)
        await send(4, 10, [a, b])
        await wait_for(lambda: len(receiver.requests) >= 10, timeout=20)
        # the work did not pause: one sender and one timer runner, checked over a few TTLs
        for _ in range(10):
            senders, timers = holders(gateways)
            assert len(senders) == 1 and len(timers) == 1, (senders, timers)
            await asyncio.sleep(1.0)
        assert once_in_order(10), delivered()

        # the sender stops; the other instance takes the endpoint over, Redis still down
        sending = holders(gateways)[0][0]
        survivor_gw, survivor = (gw_b, b) if sending is gw_a else (gw_a, a)
        await sending.stop()
        started = time.monotonic()
        await wait_for(lambda: holders([survivor_gw]) == ([survivor_gw], [survivor_gw]), timeout=10)
        await send(10, 14, [survivor])
        await wait_for(lambda: len(receiver.requests) >= 14, timeout=10)
        assert time.monotonic() - started < 10 + 2, "taken over within ~10 s"
        assert once_in_order(14), delivered()

        # Redis back: a second instance joins, the work stays on exactly one of them
        redis.start()
        assert survivor_gw.redis is not None
        await wait_for(lambda: survivor_gw.redis is not None and survivor_gw.redis.healthy, 15)
        gw_c, c = await gateway_factory(cfg)
        await send(14, 20, [survivor, c])
        await wait_for(lambda: len(receiver.requests) >= 20, timeout=20)
        for _ in range(4):
            senders, timers = holders([survivor_gw, gw_c])
            assert len(senders) == 1 and len(timers) == 1, (senders, timers)
            await asyncio.sleep(1.0)
        assert once_in_order(20), delivered()
    finally:
        redis.close()
