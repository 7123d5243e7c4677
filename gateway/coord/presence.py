"""Agent presence heartbeats: an open console says "still here" every TTL/3
(`POST /v1/agents/{id}/heartbeat`); an agent whose heartbeat has lapsed on every instance
is set offline (and the offline policy — gateway/time/escalation.py OfflineTimer — takes
it from there).

Only agents who have sent a heartbeat are watched: an agent whose presence is set by an
integration (no console open) keeps the presence it was given. With Redis the heartbeat is
a key `{prefix}:presence:<agent>` that expires by the server's clock, so a beat through any
instance keeps the agent online; without Redis the heartbeats are kept in this process.
The sweep is a deadline source: with several instances only the holder of the timers
lease runs it."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from gateway.coord.keys import Keys
from gateway.services import Services
from gateway.store.base import Store

log = logging.getLogger("switchboard.presence")

HEARTBEAT_TTL = 30.0  # seconds; the console beats every TTL/3
SWEEP_INTERVAL = 5.0


class Heartbeats(ABC):
    def __init__(self, ttl: float = HEARTBEAT_TTL) -> None:
        self.ttl = ttl

    @abstractmethod
    async def beat(self, agent: str) -> None:
        """`agent`'s console is open: alive for another `ttl` seconds."""

    @abstractmethod
    async def lapsed(self) -> list[str]:
        """Agents who sent heartbeats and whose last one has expired (everywhere)."""

    @abstractmethod
    async def forget(self, agent: str) -> None:
        """Stop watching `agent` (until its next heartbeat)."""


class LocalHeartbeats(Heartbeats):
    def __init__(
        self, ttl: float = HEARTBEAT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(ttl)
        self._clock = clock
        self._until: dict[str, float] = {}

    async def beat(self, agent: str) -> None:
        self._until[agent] = self._clock() + self.ttl

    async def lapsed(self) -> list[str]:
        now = self._clock()
        return sorted(a for a, until in self._until.items() if until <= now)

    async def forget(self, agent: str) -> None:
        self._until.pop(agent, None)


# KEYS[1] the set of watched agents; ARGV[1] the key prefix of a heartbeat.
_LAPSED = """
local out = {}
for _, agent in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. agent) == 0 then table.insert(out, agent) end
end
return out
"""


class RedisHeartbeats(Heartbeats):
    def __init__(self, client: Any, keys: Keys, ttl: float = HEARTBEAT_TTL) -> None:
        super().__init__(ttl)
        self.client, self.keys = client, keys
        self._lapsed = client.register_script(_LAPSED)

    @property
    def _watched(self) -> str:
        return self.keys.key("presence-watched")

    async def beat(self, agent: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.presence(agent), "1", px=max(1, round(self.ttl * 1000)))
            pipe.sadd(self._watched, agent)
            await pipe.execute()

    async def lapsed(self) -> list[str]:
        prefix = self.keys.presence("-")[:-1]  # "{prefix}:presence:"
        found = await self._lapsed(keys=[self._watched], args=[prefix])
        return sorted(a.decode() if isinstance(a, bytes) else str(a) for a in found)

    async def forget(self, agent: str) -> None:
        await self.client.srem(self._watched, agent)


class PresenceSweeper:
    """A deadline source: every `interval`, agents whose heartbeat lapsed go offline."""

    name = "presence"
    wake_on: frozenset[str] = frozenset()

    def __init__(
        self,
        heartbeats: Heartbeats,
        store: Store,
        services: Services,
        interval: float = SWEEP_INTERVAL,
    ) -> None:
        self.heartbeats, self.store, self.services = heartbeats, store, services
        self.interval = interval
        self._last = 0.0

    async def next_due(self, now: float) -> float | None:
        return self._last + self.interval

    async def fire(self, now: float) -> None:
        self._last = now
        lapsed = await self.heartbeats.lapsed()
        if not lapsed:
            return
        state = await self.store.routing_state()
        presence = {a.id: a.presence for a in state.agents}
        for agent in lapsed:
            if presence.get(agent, "offline") != "offline":
                await self.services.set_presence(agent, "offline")
                log.info("agent's console went quiet: set offline", extra={"agent": agent})
            await self.heartbeats.forget(agent)
