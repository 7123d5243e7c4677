"""Who is viewing (or typing in) a conversation right now: heartbeats kept in memory, each
forgotten `ttl` seconds after the last one. Every change is announced as the live-only
event `conversation.viewing` with the current viewers.

Per instance: behind several instances each knows the viewers that reached it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import iso
from gateway.model import Event, ephemeral

log = logging.getLogger("switchboard.viewing")

TTL = 30.0


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
    def __init__(
        self,
        announce: Callable[[list[Event]], None],
        clock: Callable[[], float],
        ttl: float = TTL,
    ) -> None:
        self.announce = announce
        self.clock = clock
        self.ttl = ttl
        self._by_conv: dict[str, dict[str, Viewer]] = {}

    def current(self, conversation_id: str) -> list[Viewer]:
        self.expire()
        return sorted(self._by_conv.get(conversation_id, {}).values(), key=lambda v: v.since)

    def heartbeat(
        self, conversation_id: str, agent: str, name: str, typing: bool, leaving: bool = False
    ) -> list[Viewer]:
        """Record a heartbeat (or a departure); announce when the set changed."""
        self.expire()
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
        if changed:
            self._announce(conversation_id, now)
        return self.current(conversation_id)

    def expire(self) -> None:
        """Forget viewers whose last heartbeat is older than the ttl (and announce it)."""
        now = self.clock()
        for conv_id in list(self._by_conv):
            viewers = self._by_conv[conv_id]
            gone = [a for a, v in viewers.items() if now - v.seen_at > self.ttl]
            for agent in gone:
                del viewers[agent]
            if not viewers:
                del self._by_conv[conv_id]
            if gone:
                self._announce(conv_id, now)

    def _announce(self, conversation_id: str, now: float) -> None:
        viewers = sorted(self._by_conv.get(conversation_id, {}).values(), key=lambda v: v.since)
        self.announce(
            [
                ephemeral(
                    "conversation.viewing",
                    {"conversation_id": conversation_id, "viewers": [v.to_api() for v in viewers]},
                    now,
                )
            ]
        )

    async def run(self, interval: float = 5.0) -> None:
        """Expire viewers who stopped sending heartbeats, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                self.expire()
