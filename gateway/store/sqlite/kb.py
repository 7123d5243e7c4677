"""The knowledge base's records on SQLite: suggestion events in the event log."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.model import Event, NewEvent
from gateway.store.kb import SUGGESTION_EVENTS, KbStore
from gateway.store.sqlite.connection import SqliteBase


class SqliteKb(SqliteBase, KbStore):
    async def kb_record(self, event: str, data: dict[str, Any], now: float) -> list[Event]:
        if event not in SUGGESTION_EVENTS:
            raise ValueError(f"unknown suggestion event {event!r}")

        def op(conn: sqlite3.Connection) -> list[Event]:
            return self._events(conn, now, [NewEvent(f"kb.suggestion.{event}", data)])

        result: list[Event] = await self._tx(op)
        return result
