"""Coordination between gateway instances (issue 11).

A `Coordinator` is what one instance needs from the others:

- every committed event wakes the other instances' dispatcher, outbox, webhook senders,
  deadlines and event-stream subscribers (they read the data from the store's log);
  live-only events (typing, who is viewing) reach their stream subscribers too;
- a reply for a customer reached through a socket another instance holds (web chat) is
  written by that instance (`send`), and so is an agent's typing indicator (`typing`).

`LocalCoordinator` is one instance alone, today's behaviour and the default.
`RedisCoordinator` (gateway/coord/fanout.py) uses Redis pub/sub, and polls the store's log
and outbox while Redis is unreachable. Key names: keys.py; the shared client: client.py;
leases, shared rate limits and presence: leases.py, ratelimit.py, presence.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from connectors.base import Connector, DeliveryResult, Identity, OutboundMessage

# `local`: no Redis configured, one instance; `ok`: Redis reachable and listened to;
# `degraded`: Redis configured but unreachable, wake-ups come from polling the store.
Status = Literal["local", "ok", "degraded"]


class Coordinator(ABC):
    @property
    @abstractmethod
    def status(self) -> Status:
        """How this instance hears of the others' work now (see `Status`)."""

    @abstractmethod
    async def start(self) -> None:
        """Called once the store is open, before the loops start."""

    @abstractmethod
    async def stop(self) -> None:
        """Called after the loops stopped, before the store closes."""

    @abstractmethod
    async def send(
        self, channel: str, connector: Connector, message: OutboundMessage
    ) -> DeliveryResult:
        """Deliver one outbound message through `connector` (the outbox's send)."""

    @abstractmethod
    async def typing(
        self, channel: str, connector: Connector, to: Identity, conversation_id: str, on: bool
    ) -> None:
        """An agent's typing indicator was shown here: show it where else it must be."""


class LocalCoordinator(Coordinator):
    """One instance: every socket is here, the bus wakes everything."""

    @property
    def status(self) -> Status:
        return "local"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, channel: str, connector: Connector, message: OutboundMessage
    ) -> DeliveryResult:
        return await connector.send(message)

    async def typing(
        self, channel: str, connector: Connector, to: Identity, conversation_id: str, on: bool
    ) -> None:
        pass  # the connector here already showed it


__all__ = ["Coordinator", "LocalCoordinator", "Status"]
