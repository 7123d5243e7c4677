"""The knowledge base's records on PostgreSQL: suggestion events in the event log."""

from __future__ import annotations

from typing import Any

from gateway.model import Event, NewEvent
from gateway.store.kb import SUGGESTION_EVENTS, KbStore
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase


class PgKb(PgBase, KbStore):
    async def kb_record(self, event: str, data: dict[str, Any], now: float) -> list[Event]:
        if event not in SUGGESTION_EVENTS:
            raise ValueError(f"unknown suggestion event {event!r}")

        async def op(conn: Conn) -> list[Event]:
            return await append_events(conn, now, [NewEvent(f"kb.suggestion.{event}", data)])

        return await self._tx(op)
