"""Leases with fencing tokens: work that must run once across instances.

A lease is a named right to do one job (poll one IMAP mailbox, one Telegram bot, send to one
webhook endpoint, run the timers) held by one instance for a TTL. Holders renew at TTL/3 and
give the work up as soon as a renewal fails or the TTL has run out by their own monotonic
clock; a waiter asks again about every second, so a dead holder's lease is taken over within
TTL + 1 s.

With Redis (`RedisLeases`) the lease is a hash `{prefix}:lease:<name>` whose expiry is set in
a Lua script: every comparison and expiry uses the Redis server's clock (`TIME`, `PEXPIRE`),
never the caller's. Each acquisition takes a fencing token from `INCR {prefix}:fence:<name>`
(monotonically increasing per name); work that writes to the store writes with the token and
the store refuses a write whose token is lower than the last one it saw (`kv_set_fenced`), so
a holder that was paused past its TTL cannot overwrite its successor's progress.

Without Redis (`LocalLeases`, one instance) every lease is granted at once; it carries no
fence (`token` None) and writes are unconditional.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import LeaseLost
from connectors.egress import redact_urls
from gateway.coord.keys import Keys

log = logging.getLogger("switchboard.coord.leases")

DEFAULT_TTL = 6.0
DEFAULT_RETRY = 1.0

# KEYS[1] lease hash, KEYS[2] fence counter; ARGV[1] holder, ARGV[2] ttl ms.
# Returns {1, token, server ms} when taken or already held by this holder, else
# {0, holder's token, ms left}.
_ACQUIRE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if holder and holder ~= ARGV[1] then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'token')), redis.call('PTTL', KEYS[1])}
end
local token
if holder then
  token = tonumber(redis.call('HGET', KEYS[1], 'token'))
else
  token = redis.call('INCR', KEYS[2])
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token, 'since', now,
           'expires', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, token, now}
"""

# KEYS[1] lease hash; ARGV[1] holder, ARGV[2] token, ARGV[3] ttl ms. 1 renewed, 0 lost.
_RENEW = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'expires', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1] fence counter; ARGV[1] floor.
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS[1] lease hash; ARGV[1] holder, ARGV[2] token. 1 released, 0 not ours.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """An acquisition: the fencing token (None: a local lease, no fence)."""

    token: int | None


class LeaseBackend(ABC):
    """Where leases are decided."""

    @abstractmethod
    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | None:
        """Take the lease (or confirm `holder` has it); None while someone else holds it."""

    @abstractmethod
    async def renew(self, name: str, holder: str, token: int | None, ttl: float) -> bool:
        """Extend `holder`'s lease; False when it is no longer theirs."""

    @abstractmethod
    async def release(self, name: str, holder: str, token: int | None) -> None:
        """Give the lease up (a no-op when it is no longer theirs)."""

    async def advance(self, name: str, floor: int) -> None:  # noqa: B027 - optional hook
        """Make the next token of `name` greater than `floor` (the store saw `floor`: a
        coordination server that lost its counter must not hand out lower tokens)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds."""


class LocalLeases(LeaseBackend):
    """One instance: every lease is granted, nothing is fenced."""

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | None:
        return Grant(None)

    async def renew(self, name: str, holder: str, token: int | None, ttl: float) -> bool:
        return True

    async def release(self, name: str, holder: str, token: int | None) -> None:
        return None


class RedisLeases(LeaseBackend):
    """Leases in Redis; all time is the Redis server's (see the module docstring)."""

    def __init__(self, client: Any, keys: Keys | None = None) -> None:
        """`client`: a redis.asyncio.Redis (the shared one: gateway/coord/client.py)."""
        self.client = client
        self.keys = keys or Keys()
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._advance = client.register_script(_ADVANCE)

    def lease_key(self, name: str) -> str:
        return self.keys.lease(name)

    def fence_key(self, name: str) -> str:
        return self.keys.fence(name)

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | None:
        ok, token, _ = await self._acquire(
            keys=[self.lease_key(name), self.fence_key(name)], args=[holder, _ms(ttl)]
        )
        return Grant(int(token)) if int(ok) == 1 else None

    async def renew(self, name: str, holder: str, token: int | None, ttl: float) -> bool:
        done = await self._renew(keys=[self.lease_key(name)], args=[holder, str(token), _ms(ttl)])
        return int(done) == 1

    async def release(self, name: str, holder: str, token: int | None) -> None:
        await self._release(keys=[self.lease_key(name)], args=[holder, str(token)])

    async def advance(self, name: str, floor: int) -> None:
        await self._advance(keys=[self.fence_key(name)], args=[floor])

    async def holder(self, name: str) -> tuple[str, int, int] | None:
        """(holder, token, server ms when it expires) of a lease, for tools and tests."""
        raw = await self.client.hgetall(self.lease_key(name))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        return data["holder"], int(data["token"]), int(data["expires"])


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Lease:
    """One named lease as the work sees it: `acquire()` waits until held, a background task
    renews at TTL/3, `held` turns False (and `lost` is set) when a renewal fails or the TTL
    has run out without one. `token` is the fencing token of the current holding."""

    def __init__(
        self,
        backend: LeaseBackend,
        name: str,
        holder: str,
        *,
        ttl: float = DEFAULT_TTL,
        retry: float = DEFAULT_RETRY,
    ) -> None:
        self.backend, self.name, self.holder = backend, name, holder
        # What logs and errors call it: a webhook's lease is named by its URL, which may
        # carry the endpoint's credential.
        self.label = redact_urls(name)
        self.ttl, self.retry = ttl, retry
        self.token: int | None = None
        self._held = False
        self._valid_until = 0.0  # monotonic: the latest the holding can be trusted
        self._renewer: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._held and time.monotonic() < self._valid_until

    @property
    def fence(self) -> int | None:
        """The token to write with; raises LeaseLost when the lease is not held."""
        if not self.held:
            raise LeaseLost(self.label)
        return self.token

    async def try_acquire(self) -> bool:
        """One attempt; True when this instance now holds the lease."""
        if self.held:
            return True
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.ttl / 3):
                grant = await self.backend.acquire(self.name, self.holder, self.ttl)
        except Exception as exc:
            log.warning("lease not acquired: %r", exc, extra={"lease": self.label})
            return False
        if grant is None:
            return False
        self.token = grant.token
        self._held = True
        self._valid_until = started + self.ttl
        self.lost.clear()
        log.info("lease acquired", extra={"lease": self.label, "token": grant.token})
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name=f"lease {self.label}")
        return True

    async def acquire(self) -> int | None:
        """Wait until held (asking every `retry` seconds); the fencing token."""
        while True:
            if await self.try_acquire():
                return self.token
            await asyncio.sleep(self.retry)

    async def _renew(self) -> None:
        token = self.token
        while self._held and self.token == token:
            await asyncio.sleep(self.ttl / 3)
            if not self._held or self.token != token:
                return
            started = time.monotonic()
            try:
                # bounded: a renewal that hangs is a failed one
                async with asyncio.timeout(self.ttl / 3):
                    ok = await self.backend.renew(self.name, self.holder, token, self.ttl)
            except Exception as exc:
                ok = None
                log.warning("lease not renewed: %r", exc, extra={"lease": self.label})
            if ok:
                self._valid_until = started + self.ttl
            elif ok is False or time.monotonic() >= self._valid_until - self.ttl / 3:
                # refused, or unreachable for two renewals in a row: give the work up before
                # the server's TTL can run out under it
                self._lose("renewal failed" if ok is False else "lease server unreachable")
                return

    def _lose(self, why: str) -> None:
        if self._held:
            log.warning("lease lost: %s", why, extra={"lease": self.label, "token": self.token})
        self._held = False
        self.lost.set()

    async def refused(self, floor: int | None) -> None:
        """The store refused a write with this lease's token; `floor` is the token it has
        seen. Either a newer holder exists (then nothing changes for it), or Redis lost its
        token counter (restarted without its last writes): the counter is moved past
        `floor` and this holding given up, so the next acquisition gets a valid token
        instead of being refused for ever."""
        self._lose("a fenced write was refused")
        if floor is None:
            return
        with contextlib.suppress(Exception):
            await self.backend.advance(self.name, floor)
            await self.backend.release(self.name, self.holder, self.token)

    async def release(self) -> None:
        renewer, self._renewer = self._renewer, None
        was_held, self._held = self._held, False
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        if was_held:
            with contextlib.suppress(Exception):
                await self.backend.release(self.name, self.holder, self.token)
        self.lost.set()

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[Lease]:
        """Held for the block (waits for it first); released at the end."""
        await self.acquire()
        try:
            yield self
        finally:
            await self.release()


FencedSet = Callable[[str, str, str, int], Awaitable[bool]]


class ChannelLease:
    """A lease as a connector sees it (connectors.base.Lease): `set` writes the channel's
    key-value entry with the fencing token, in the store's transaction (`kv_set_fenced`)."""

    def __init__(
        self,
        lease: Lease,
        plain_set: Callable[[str, str], Awaitable[None]],
        fenced_set: FencedSet,
        get: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self._lease, self._plain_set, self._fenced_set = lease, plain_set, fenced_set
        self._get = get

    @property
    def held(self) -> bool:
        return self._lease.held

    async def acquire(self) -> None:
        await self._lease.acquire()

    async def release(self) -> None:
        await self._lease.release()

    async def wait_lost(self) -> None:
        await self._lease.lost.wait()

    async def set(self, key: str, value: str) -> None:
        token = self._lease.fence
        if token is None:
            await self._plain_set(key, value)
        elif not await self._fenced_set(key, value, self._lease.name, token):
            seen = await self._get(f"fence:{self._lease.name}")
            await self._lease.refused(int(seen) if seen and seen.isdigit() else None)
            raise LeaseLost(self._lease.label)


class Leases:
    """The instance's lease factory: `leases.lease(name)`."""

    def __init__(
        self,
        backend: LeaseBackend,
        holder: str,
        *,
        ttl: float = DEFAULT_TTL,
        retry: float = DEFAULT_RETRY,
    ) -> None:
        self.backend, self.holder, self.ttl, self.retry = backend, holder, ttl, retry

    @property
    def shared(self) -> bool:
        """True when leases are decided across instances (Redis)."""
        return not isinstance(self.backend, LocalLeases)

    def lease(self, name: str) -> Lease:
        return Lease(self.backend, name, self.holder, ttl=self.ttl, retry=self.retry)

    async def close(self) -> None:
        await self.backend.close()


def make_leases(
    redis: Any | None,
    keys: Keys,
    holder: str,
    *,
    rows: Any | None = None,
    health: Any | None = None,
) -> Leases:
    """Redis leases on the shared client when coordination.redis is set, else local ones.
    With `rows` (a store with lease rows, gateway/store/leaserows.py) and `health` (the
    RedisClient), the store row decides and leases keep working while Redis is down
    (gateway/coord/storeleases.py)."""
    if redis is None:
        return Leases(LocalLeases(), holder)
    if rows is not None and health is not None:
        from gateway.coord.storeleases import StoreBackedLeases

        return Leases(StoreBackedLeases(RedisLeases(redis, keys), rows, health), holder)
    return Leases(RedisLeases(redis, keys), holder)
