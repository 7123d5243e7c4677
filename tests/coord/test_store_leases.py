"""Leases while Redis is down (issue 11): the store's lease row decides, with the database
server's clock, and its fencing tokens stay above every token Redis issued, before and after."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.coord.client import RedisClient
from gateway.coord.keys import Keys
from gateway.coord.leases import Lease, RedisLeases
from gateway.coord.storeleases import StoreBackedLeases
from gateway.store.base import Store
from gateway.store.leaserows import LeaseRows
from gateway.store.postgres import PostgresStore
from tests.gateway.conftest import wait_for
from tests.pg import PgServer
from tests.redisserver import RedisServer, own_server
from tests.store.test_contract import backend, store  # noqa: F401 - both backends

pytestmark = pytest.mark.timeout(90)

# Each lease step must fit in TTL/3; a loaded shared machine needs a second or so.
TTL = 3.0


def rows(one: Store) -> LeaseRows:
    assert isinstance(one, LeaseRows)
    return one


async def test_one_holder_tokens_increase_and_pass_every_token_seen(store: Store) -> None:  # noqa: F811
    r = rows(store)
    assert await r.lease_take("timers", "a", 10) == (True, 1)
    assert await r.lease_take("timers", "b", 10) == (False, 1)  # a's row is live
    assert await r.lease_renew("timers", "a", 1, 10)
    assert not await r.lease_renew("timers", "b", 1, 10)
    await r.lease_release("timers", "b", 1)  # not b's: nothing happens
    assert await r.lease_take("timers", "b", 10) == (False, 1)
    await r.lease_release("timers", "a", 1)
    assert await r.lease_take("timers", "b", 10) == (True, 2)
    assert not await r.lease_renew("timers", "a", 1, 10)  # the old holding is over
    await r.lease_release("timers", "b", 2)
    # A token from Redis is taken only if greater than every token the store has seen.
    assert await r.lease_take("timers", "c", 10, token=2) == (False, 2)
    assert await r.lease_take("timers", "c", 10, token=7) == (True, 7)
    await r.lease_release("timers", "c", 7)
    await r.lease_advance("timers", 20)
    assert await r.lease_take("timers", "a", 10) == (True, 21)
    await r.lease_release("timers", "a", 21)
    # A fenced write recorded a token the lease row never saw (written before the row
    # existed): the next token is past it.
    assert await store.kv_set_fenced("channel:mail", "cursor", "1", "timers", 50)
    assert await r.lease_take("timers", "b", 10) == (True, 51)
    holder = await r.lease_row("timers")
    assert holder is not None and holder[:2] == ("b", 51) and 9 < holder[2] <= 10


async def test_an_expired_holding_is_taken_over(store: Store) -> None:  # noqa: F811
    r = rows(store)
    assert (await r.lease_take("poll", "a", 0.3))[0]
    assert not (await r.lease_take("poll", "b", 0.3))[0]
    await asyncio.sleep(0.5)
    assert await r.lease_take("poll", "b", 10) == (True, 2)


async def test_postgres_lease_time_is_the_database_servers(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers whose clocks are an hour apart still see one holder."""
    one = PostgresStore(pg_server.schema_dsn(tmp_path))
    await one.open()
    try:
        assert (await one.lease_take("poll", "a", 30))[0]
        monkeypatch.setattr(time, "time", lambda: 1e10)  # a caller far in the future
        assert not (await one.lease_take("poll", "b", 30))[0]
        row = await one.lease_row("poll")
        assert row is not None and 29 < row[2] <= 30
    finally:
        await one.close()


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = own_server()
    yield server
    server.close()


@pytest.fixture
async def pg_store(pg_server: PgServer, tmp_path: Path) -> AsyncIterator[PostgresStore]:
    one = PostgresStore(pg_server.schema_dsn(tmp_path))
    await one.open()
    yield one
    await one.close()


@pytest.mark.timeout(120)
async def test_leases_go_on_while_redis_is_down_and_move_back_after(
    redis: RedisServer, pg_store: PostgresStore
) -> None:
    """Two instances (each its own Redis client, one database): the holder keeps its work
    through a Redis outage, exactly one holds at any moment, a stopped holder is taken over
    while Redis is still down, and tokens keep increasing when Redis comes back (its counter
    is moved past the tokens the store issued meanwhile)."""
    clients = [RedisClient(redis.url, Keys("t"), interval=0.2, timeout=0.5) for _ in "ab"]
    for c in clients:
        await c.start()
    backends = [StoreBackedLeases(RedisLeases(c.redis, Keys("t")), pg_store, c) for c in clients]
    a, b = (
        Lease(be, "timers", who, ttl=TTL, retry=0.2) for be, who in zip(backends, "ab", strict=True)
    )
    both: list[float] = []

    async def watch() -> None:
        while True:
            if a.held and b.held:
                both.append(time.monotonic())
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        first = await a.acquire()
        assert first is not None
        assert not await b.try_acquire()
        assert (await backends[0].redis.holder("timers") or ("",))[0] == "a"  # Redis's too

        redis.kill()
        await wait_for(lambda: not any(c.healthy for c in clients), timeout=5)
        await asyncio.sleep(3 * TTL)  # three TTLs: a renews in the store, b is refused
        assert a.held and not a.lost.is_set()
        assert not await b.try_acquire()

        await a.release()  # the holder stops: b takes over with Redis still down
        started = time.monotonic()
        second = await b.acquire()
        assert time.monotonic() - started < TTL and second is not None and second > first

        redis.start()
        await wait_for(lambda: all(c.healthy for c in clients), timeout=10)
        await asyncio.sleep(2 * TTL)
        assert b.held and not await a.try_acquire()  # b's holding survives Redis's return
        await b.release()
        third = await a.acquire()  # through Redis again: its counter moved past `second`
        assert third is not None and third > second
        holder = await backends[0].redis.holder("timers")
        assert holder is not None and holder[:2] == ("a", third)
        assert both == [], "two holders at once"
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for lease in (a, b):
            await lease.release()
        for c in clients:
            await c.stop()


@pytest.mark.timeout(120)
async def test_a_hung_redis_does_not_cost_the_holder_its_lease(
    redis: RedisServer, pg_store: PostgresStore
) -> None:
    """Redis stopped (SIGSTOP: connections hang instead of being refused): the holder's
    renewals still land in time in the store, nobody else takes the lease."""
    clients = [RedisClient(redis.url, Keys("t"), interval=0.5) for _ in "ab"]
    for c in clients:
        await c.start()
    backends = [StoreBackedLeases(RedisLeases(c.redis, Keys("t")), pg_store, c) for c in clients]
    a, b = (
        Lease(be, "poll", who, ttl=6.0, retry=0.3) for be, who in zip(backends, "ab", strict=True)
    )
    assert redis._proc is not None
    try:
        await a.acquire()
        redis._proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 2 * 6.0
        while time.monotonic() < deadline:
            assert not await b.try_acquire()
            assert a.held, "the holder lost its lease to a hung Redis"
            await asyncio.sleep(0.3)
    finally:
        redis._proc.send_signal(signal.SIGCONT)
        for lease in (a, b):
            await lease.release()
        for c in clients:
            await c.stop()
