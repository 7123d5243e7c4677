"""Who is viewing (or typing in) a conversation right now: heartbeats, each viewer forgotten
`ttl` seconds after its last one. Every change is announced as the live-only event
`conversation.viewing` with the current viewers.

`Viewers` keeps them in this process (one instance, no `coordination.redis`).
`RedisViewers` keeps them in Redis, timed by the Redis server's clock, so every instance
lists every viewer whichever instance their console talks to: per conversation a sorted set
agent -> last heartbeat and a hash agent -> name, typing, since (gateway/coord/keys.py), and
an index of the conversations that have viewers. A change is announced once, by the
instance that made it (a heartbeat, a departure, or a sweep that found viewers expired: the
scripts are atomic, so one instance finds each expiry; every instance sweeps every 5 s, so
a viewer who stopped is gone everywhere within ttl + 5 s); the coordinator carries the
live-only event to the other instances' streams (gateway/coord/fanout.py). While Redis is
unreachable each instance falls back to its own memory (one warning per outage) and lists
only the viewers whose heartbeats reach it; when Redis answers again that memory is
dropped and the next heartbeats (every ~10 s) fill Redis again."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import iso
from gateway.coord.keys import Keys
from gateway.coord.ratelimit import SERVER_NOW_MS
from gateway.model import Event, ephemeral

log = logging.getLogger("switchboard.viewing")

TTL = 30.0
SWEEP_INTERVAL = 5.0


@dataclass(slots=True)
class Viewer:
    agent: str
    name: str
    typing: bool
    since: float
    seen_at: float

    def to_api(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "name": self.name,
            "typing": self.typing,
            "since": iso(self.since),
            "seen_at": iso(self.seen_at),
        }


class Viewers:
    """The viewers in this process's memory."""

    def __init__(
        self,
        announce: Callable[[list[Event]], None],
        clock: Callable[[], float],
        ttl: float = TTL,
    ) -> None:
        self.announce = announce
        self.clock = clock
        self.ttl = ttl
        self.interval = SWEEP_INTERVAL  # how often `run` looks for expired viewers
        self._by_conv: dict[str, dict[str, Viewer]] = {}

    async def current(self, conversation_id: str) -> list[Viewer]:
        """The viewers now, longest first."""
        self._expire_local()
        return self._listed(conversation_id)

    async def heartbeat(
        self, conversation_id: str, agent: str, name: str, typing: bool, leaving: bool = False
    ) -> list[Viewer]:
        """Record a heartbeat (or a departure); announce when the set changed."""
        self._expire_local()
        now = self.clock()
        viewers = self._by_conv.setdefault(conversation_id, {})
        before = viewers.get(agent)
        changed = False
        if leaving:
            changed = viewers.pop(agent, None) is not None
        elif before is None:
            viewers[agent] = Viewer(agent, name, typing, now, now)
            changed = True
        else:
            changed = before.typing != typing
            before.typing, before.seen_at = typing, now
        if not viewers:
            self._by_conv.pop(conversation_id, None)
        current = self._listed(conversation_id)
        if changed:
            self._announce(conversation_id, current, now)
        return current

    async def expire(self) -> None:
        """Forget viewers whose last heartbeat is older than the ttl (and announce it)."""
        self._expire_local()

    def _listed(self, conversation_id: str) -> list[Viewer]:
        return sorted(self._by_conv.get(conversation_id, {}).values(), key=lambda v: v.since)

    def _expire_local(self) -> None:
        now = self.clock()
        for conv_id in list(self._by_conv):
            viewers = self._by_conv[conv_id]
            gone = [a for a, v in viewers.items() if now - v.seen_at > self.ttl]
            for agent in gone:
                del viewers[agent]
            if not viewers:
                del self._by_conv[conv_id]
            if gone:
                self._announce(conv_id, self._listed(conv_id), now)

    def _announce(self, conversation_id: str, viewers: list[Viewer], now: float) -> None:
        self.announce(
            [
                ephemeral(
                    "conversation.viewing",
                    {"conversation_id": conversation_id, "viewers": [v.to_api() for v in viewers]},
                    now,
                )
            ]
        )

    async def run(self) -> None:
        """Expire viewers who stopped sending heartbeats every `interval`, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.expire()
            except Exception:
                log.exception("expiring viewers failed")


# Lua helpers, after SERVER_NOW_MS: `listed` flattens a conversation's viewers to
# {agent, info JSON, last heartbeat ms, agent, ...}; `drop_stale` removes the expired ones.
_LIST = """
local function listed(zkey, hkey)
  local out = {}
  local members = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local info = redis.call('HGET', hkey, members[i])
    if info then
      table.insert(out, members[i])
      table.insert(out, info)
      table.insert(out, members[i + 1])
    end
  end
  return out
end
local function drop_stale(zkey, hkey, ttl)
  local stale = redis.call('ZRANGEBYSCORE', zkey, '-inf', '(' .. (now - ttl))
  for _, agent in ipairs(stale) do
    redis.call('ZREM', zkey, agent)
    redis.call('HDEL', hkey, agent)
  end
  return #stale
end
"""

# KEYS[1] viewers (zset), KEYS[2] viewer info (hash), KEYS[3] the index of viewed
# conversations; ARGV[1] conversation id, ARGV[2] op (beat, leave, read), ARGV[3] agent,
# ARGV[4] name, ARGV[5] typing (0/1), ARGV[6] ttl ms. Expired viewers are dropped first.
# Returns {changed (0/1), now ms, then `listed`}.
_BEAT = (
    SERVER_NOW_MS
    + _LIST
    + """
local ttl = tonumber(ARGV[6])
local changed = 0
if drop_stale(KEYS[1], KEYS[2], ttl) > 0 then changed = 1 end
local op, agent = ARGV[2], ARGV[3]
if op == 'leave' then
  if redis.call('ZREM', KEYS[1], agent) == 1 then changed = 1 end
  redis.call('HDEL', KEYS[2], agent)
elseif op == 'beat' then
  local typing = ARGV[5] == '1'
  local raw = redis.call('HGET', KEYS[2], agent)
  local info
  if raw then
    info = cjson.decode(raw)
    if info.typing ~= typing then changed = 1 end
  else
    info = {since = now}
    changed = 1
  end
  info.typing = typing
  info.name = ARGV[4]
  redis.call('HSET', KEYS[2], agent, cjson.encode(info))
  redis.call('ZADD', KEYS[1], now, agent)
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, 2 * ttl) end
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  -- listed until now, its keys expired unnoticed: that is a change too
  if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then changed = 1 end
end
local out = listed(KEYS[1], KEYS[2])
table.insert(out, 1, now)
table.insert(out, 1, changed)
return out
"""
)

# KEYS[1] the index of viewed conversations; ARGV[1] the key prefix of the viewers sets,
# ARGV[2] of the info hashes, ARGV[3] ttl ms. Drops every expired viewer; returns the
# conversations whose viewers changed (whose keys expired count too).
_SWEEP = (
    SERVER_NOW_MS
    + _LIST
    + """
local ttl = tonumber(ARGV[3])
local changed = {}
for _, conv in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local zkey, hkey = ARGV[1] .. conv, ARGV[2] .. conv
  local dropped = drop_stale(zkey, hkey, ttl)
  if redis.call('ZCARD', zkey) == 0 then
    redis.call('DEL', zkey, hkey)
    redis.call('ZREM', KEYS[1], conv)
    table.insert(changed, conv)
  elseif dropped > 0 then
    table.insert(changed, conv)
  end
end
return changed
"""
)


class RedisViewers(Viewers):
    """The viewers of every instance, in Redis; this process's memory while it is
    unreachable. With `health` (gateway/coord/client.py RedisClient, which pings every
    second) Redis is not asked while it is known to be down."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        announce: Callable[[list[Event]], None],
        clock: Callable[[], float],
        ttl: float = TTL,
        health: Any | None = None,
    ) -> None:
        super().__init__(announce, clock, ttl)
        self.keys = keys
        self.health = health
        self._beat = client.register_script(_BEAT)
        self._sweep = client.register_script(_SWEEP)
        self._local = False  # falling back to memory now (logged once when it began)

    async def current(self, conversation_id: str) -> list[Viewer]:
        shared = await self._shared(conversation_id, "read")
        return await super().current(conversation_id) if shared is None else shared

    async def heartbeat(
        self, conversation_id: str, agent: str, name: str, typing: bool, leaving: bool = False
    ) -> list[Viewer]:
        op = "leave" if leaving else "beat"
        shared = await self._shared(conversation_id, op, agent, name, typing)
        if shared is None:
            return await super().heartbeat(conversation_id, agent, name, typing, leaving)
        return shared

    async def expire(self) -> None:
        changed: list[str] | None = None
        if self._usable():
            try:
                found = await self._sweep(
                    keys=[self.keys.viewed],
                    args=[
                        self._prefix(self.keys.viewers),
                        self._prefix(self.keys.viewer_info),
                        self._ms,
                    ],
                )
                changed = [_text(c) for c in found]
            except Exception as exc:
                self._fall_back(exc)
        if changed is None:
            await super().expire()
            return
        self._back()
        for conversation_id in changed:
            await self._shared(conversation_id, "read", announce=True)

    @property
    def _ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    @staticmethod
    def _prefix(key: Callable[[str], str]) -> str:
        return key("-")[:-1]  # "{prefix}:viewers:"

    def _usable(self) -> bool:
        if self.health is not None and not self.health.healthy:
            self._fall_back(None)
            return False
        return True

    async def _shared(
        self,
        conversation_id: str,
        op: str,
        agent: str = "",
        name: str = "",
        typing: bool = False,
        announce: bool = False,
    ) -> list[Viewer] | None:
        """Run one op on Redis; the viewers after it, or None when Redis failed."""
        if not self._usable():
            return None
        keys = [
            self.keys.viewers(conversation_id),
            self.keys.viewer_info(conversation_id),
            self.keys.viewed,
        ]
        try:
            reply = await self._beat(
                keys=keys, args=[conversation_id, op, agent, name, int(typing), self._ms]
            )
            changed, now_ms = int(reply[0]), int(reply[1])
            viewers = [
                _viewer(_text(reply[i]), _text(reply[i + 1]), float(reply[i + 2]))
                for i in range(2, len(reply) - 2, 3)
            ]
        except Exception as exc:
            self._fall_back(exc)
            return None
        self._back()
        viewers.sort(key=lambda v: (v.since, v.agent))
        if changed or announce:
            self._announce(conversation_id, viewers, now_ms / 1000.0)
        return viewers

    def _fall_back(self, exc: BaseException | None) -> None:
        if self._local:
            return
        self._local = True
        log.warning(
            "who is viewing: Redis unavailable; this instance's viewers only",
            extra={"error": type(exc).__name__ if exc is not None else "redis down"},
        )

    def _back(self) -> None:
        if not self._local:
            return
        self._local = False
        self._by_conv.clear()  # the consoles' next heartbeats go to Redis
        log.info("who is viewing: shared through Redis again")


def _viewer(agent: str, info: str, seen_ms: float) -> Viewer:
    data = json.loads(info)
    return Viewer(
        agent,
        str(data.get("name") or agent),
        bool(data.get("typing")),
        float(data["since"]) / 1000.0,
        seen_ms / 1000.0,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
