"""Leases with fencing tokens on a real Redis, and the store refusing a stale holder's write
(SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from connectors.base import LeaseLost, LocalLease
from gateway.coord.keys import Keys
from gateway.coord.leases import ChannelLease, Lease, Leases, LocalLeases, RedisLeases
from gateway.store import Store
from tests.standins.context import MemoryKV
from tests.store.test_contract import BACKENDS

TTL = 0.9  # short for the tests; production is 6 s


@pytest.fixture
async def backend(redis_url: str) -> AsyncIterator[RedisLeases]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    b = RedisLeases(client, Keys("t"))
    yield b
    await client.aclose()


def lease(backend: RedisLeases, holder: str, name: str = "imap") -> Lease:
    return Lease(backend, name, holder, ttl=TTL, retry=0.1)


async def test_one_holder_at_a_time_and_tokens_increase(backend: RedisLeases) -> None:
    a, b = lease(backend, "a"), lease(backend, "b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    first = a.token
    assert first is not None
    await a.release()
    assert await b.try_acquire()
    assert b.token is not None and b.token > first
    await b.release()
    assert await a.try_acquire()
    assert a.token is not None and a.token > b.token
    await a.release()
    # the token counter and the lease share the hash tag {t}: one Redis Cluster slot
    assert backend.lease_key("imap").startswith("{t}:") and backend.fence_key("imap")[:4] == "{t}:"


async def test_renewal_keeps_the_lease_past_its_ttl(backend: RedisLeases) -> None:
    a, b = lease(backend, "a"), lease(backend, "b")
    await a.acquire()
    await asyncio.sleep(TTL * 3)
    assert a.held
    assert not await b.try_acquire()
    await a.release()


async def test_a_holder_that_stops_renewing_is_taken_over(backend: RedisLeases) -> None:
    a, b = lease(backend, "a"), lease(backend, "b")
    await a.acquire()
    assert a._renewer is not None
    a._renewer.cancel()  # the process froze (or died): no renewal any more
    started = time.monotonic()
    await asyncio.wait_for(b.acquire(), 5)
    waited = time.monotonic() - started
    assert waited <= TTL + 0.5, waited
    assert b.token is not None and a.token is not None and b.token > a.token
    # the frozen holder's own clock says its TTL is over too: it does not trust the lease
    assert not a.held
    await b.release()


async def test_a_holder_whose_lease_was_taken_learns_it_at_the_next_renewal(
    backend: RedisLeases,
) -> None:
    a = lease(backend, "a")
    await a.acquire()
    await backend.client.delete(backend.lease_key("imap"))  # expired under a paused holder
    b = lease(backend, "b")
    assert await b.try_acquire()
    await asyncio.wait_for(a.lost.wait(), TTL)
    assert not a.held and b.held
    await a.release()  # not ours any more: releasing must not free b's lease
    assert await backend.holder("imap") is not None
    await b.release()


async def test_lease_time_is_the_redis_servers(backend: RedisLeases) -> None:
    """The expiry is computed in the script from the server's TIME, and Redis expires the
    key by its own clock: a caller whose wall clock is an hour off changes nothing."""
    a = lease(backend, "a")
    await a.acquire()
    seconds, micros = await backend.client.time()
    server_ms = seconds * 1000 + micros // 1000
    found = await backend.holder("imap")
    assert found is not None
    holder, token, expires = found
    assert holder == "a" and token == a.token
    assert server_ms < expires <= server_ms + TTL * 1000
    assert 0 < await backend.client.pttl(backend.lease_key("imap")) <= TTL * 1000
    await a.release()


async def test_wall_clock_of_the_caller_is_never_read(
    backend: RedisLeases, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    a, b = lease(backend, "a"), lease(backend, "b")
    await a.acquire()
    assert not await b.try_acquire()  # an hour "later" on b's clock: still a's
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    await asyncio.sleep(TTL)
    assert a.held and not await b.try_acquire()
    await a.release()


async def test_redis_unreachable_gives_the_work_up(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.3)
    backend = RedisLeases(client, Keys("t"))
    a = lease(backend, "a")
    await a.acquire()
    await client.aclose()
    backend.client = aioredis.Redis(host="127.0.0.1", port=1)  # nothing listens there
    backend._renew = backend.client.register_script("return 1")
    await asyncio.wait_for(a.lost.wait(), TTL * 2)
    assert not a.held


async def test_a_lease_named_by_a_url_is_logged_without_its_secret(
    backend: RedisLeases, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook's lease is named by its URL, which may hold the endpoint's token."""
    a = Lease(backend, "webhook:https://hooks.example/services/T0/B0/S3cret", "a", ttl=TTL)
    caplog.set_level(logging.INFO, logger="switchboard.coord")
    await a.acquire()
    await a.release()
    with pytest.raises(LeaseLost) as lost:
        a.fence  # noqa: B018 - raises: no longer held
    logged = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    assert any("hooks.example/services/…" in line for line in logged)
    assert not any("S3cret" in line for line in logged) and "S3cret" not in str(lost.value)


async def test_local_leases_always_grant() -> None:
    leases = Leases(LocalLeases(), "me", ttl=TTL)
    one, two = leases.lease("x"), leases.lease("x")
    assert await one.try_acquire() and await two.try_acquire()
    assert one.token is None and not leases.shared
    await one.release()
    await two.release()
    kv = MemoryKV()
    local = LocalLease(kv)
    await local.acquire()
    await local.set("k", "v")
    assert kv.data == {"k": "v"} and local.held
    await local.release()
    await asyncio.wait_for(local.wait_lost(), 1)


# --- fencing in the store ------------------------------------------------------------------


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")
    one = BACKENDS[request.param](tmp_path)
    await one.open()
    yield one
    await one.close()


async def test_store_refuses_a_lower_token(store: Store) -> None:
    assert await store.kv_set_fenced("channel:mail", "cursor", "10", "imap", 2)
    assert await store.kv_set_fenced("channel:mail", "cursor", "11", "imap", 2)  # same holding
    assert not await store.kv_set_fenced("channel:mail", "cursor", "5", "imap", 1)
    assert await store.kv_get("channel:mail", "cursor") == "11"
    assert await store.kv_set_fenced("channel:mail", "cursor", "12", "imap", 3)
    assert not await store.kv_set_fenced("channel:mail", "cursor", "99", "imap", 2)
    assert await store.kv_get("channel:mail", "cursor") == "12"
    # another fence in the same namespace is its own
    assert await store.kv_set_fenced("channel:mail", "other", "x", "other", 1)


async def test_a_stale_holders_write_is_refused(backend: RedisLeases, store: Store) -> None:
    """a holds the lease and freezes; b takes it over and writes; a wakes and writes: refused,
    b's value stays, and a learns it lost the lease."""

    def channel(holder: str) -> ChannelLease:
        async def plain(key: str, value: str) -> None:
            await store.kv_set("channel:mail", key, value)

        async def fenced(key: str, value: str, fence: str, token: int) -> bool:
            return await store.kv_set_fenced("channel:mail", key, value, fence, token)

        async def get(key: str) -> str | None:
            return await store.kv_get("channel:mail", key)

        return ChannelLease(lease(backend, holder), plain, fenced, get)

    a, b = channel("a"), channel("b")
    await a.acquire()
    await a.set("cursor", "1")
    inner = a._lease
    assert inner._renewer is not None
    inner._renewer.cancel()  # frozen
    await asyncio.wait_for(b.acquire(), 5)
    await b.set("cursor", "2")
    # a's process wakes before its own clock noticed: it still believes it holds the lease
    inner._held, inner._valid_until = True, time.monotonic() + 10
    with pytest.raises(LeaseLost):
        await a.set("cursor", "stale")
    assert not a.held
    assert await store.kv_get("channel:mail", "cursor") == "2"
    await b.release()


async def test_a_redis_that_lost_its_token_counter_does_not_stall_the_work(
    backend: RedisLeases, store: Store
) -> None:
    """Redis restarted without its last writes: the counter starts again below the token
    the store has seen. The first write is refused, the counter is moved past it, and the
    next holding writes again."""

    async def plain(key: str, value: str) -> None:
        await store.kv_set("channel:tg", key, value)

    async def fenced(key: str, value: str, fence: str, token: int) -> bool:
        return await store.kv_set_fenced("channel:tg", key, value, fence, token)

    async def get(key: str) -> str | None:
        return await store.kv_get("channel:tg", key)

    assert await store.kv_set_fenced("channel:tg", "offset", "100", "imap", 7)  # seen: 7
    a = ChannelLease(lease(backend, "a"), plain, fenced, get)
    await a.acquire()  # token 1: the counter was lost
    with pytest.raises(LeaseLost):
        await a.set("offset", "101")
    assert not a.held
    await a.acquire()
    await a.set("offset", "101")
    assert await store.kv_get("channel:tg", "offset") == "101"
    await a.release()
