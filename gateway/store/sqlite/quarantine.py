"""The SQLite store's quarantine: inbound items the gateway could not take, kept as they
came so that an admin can look at them, download them and re-submit them."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, TypeVar

from gateway.ids import new_id
from gateway.model import Event, NewEvent
from gateway.store.base import QUARANTINE_STATUSES, NotFound, QuarantinedItem
from gateway.store.rows import QUARANTINE_COLS, quarantine_row
from gateway.store.sqlite.connection import SqliteBase

T = TypeVar("T")


class SqliteQuarantine(SqliteBase):
    """Mixed into `SqliteStore`; uses `_tx`, `_run` and `_events` of `SqliteBase`."""

    async def quarantine_add(
        self,
        channel: str,
        content_type: str,
        data: bytes,
        reason: str,
        now: float,
        external_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[QuarantinedItem, list[Event]]:
        item_id = new_id("q")

        def op(conn: sqlite3.Connection) -> tuple[QuarantinedItem, list[Event]]:
            conn.execute(
                "INSERT INTO quarantine(id, channel, content_type, data, external_id, reason,"
                " metadata, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    item_id,
                    channel,
                    content_type,
                    data,
                    external_id,
                    reason,
                    json.dumps(metadata or {}, default=str),
                    now,
                    now,
                ),
            )
            item = self._quarantined(conn, item_id)
            return item, self._events(
                conn, now, [NewEvent("message.quarantined", {"quarantine": item.to_api()})]
            )

        result: tuple[QuarantinedItem, list[Event]] = await self._tx(op)
        return result

    @staticmethod
    def _quarantined(conn: sqlite3.Connection, item_id: str) -> QuarantinedItem:
        row = conn.execute(
            f"SELECT {QUARANTINE_COLS} FROM quarantine WHERE id=?", (item_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"quarantined item {item_id} not found")
        return quarantine_row(row)

    async def quarantine_list(
        self,
        status: str | None = None,
        channel: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[QuarantinedItem], str | None]:
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if channel is not None:
            where.append("channel=?")
            args.append(channel)
        if cursor is not None:  # keyset on insertion order (ids made in one ms may not sort)
            where.append("rowid < (SELECT rowid FROM quarantine WHERE id=?)")
            args.append(cursor)
        sql = f"SELECT {QUARANTINE_COLS} FROM quarantine"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(limit + 1)

        def op(conn: sqlite3.Connection) -> tuple[list[QuarantinedItem], str | None]:
            rows = [quarantine_row(r) for r in conn.execute(sql, args).fetchall()]
            more = len(rows) > limit
            rows = rows[:limit]
            return rows, (rows[-1].id if more and rows else None)

        result: tuple[list[QuarantinedItem], str | None] = await self._run(op)
        return result

    async def quarantine_get(self, item_id: str) -> tuple[QuarantinedItem, bytes]:
        def op(conn: sqlite3.Connection) -> tuple[QuarantinedItem, bytes]:
            item = self._quarantined(conn, item_id)
            data = conn.execute("SELECT data FROM quarantine WHERE id=?", (item_id,)).fetchone()
            return item, bytes(data[0])

        result: tuple[QuarantinedItem, bytes] = await self._run(op)
        return result

    async def quarantine_settle(
        self,
        item_id: str,
        status: str,
        now: float,
        reason: str | None = None,
        message_id: str | None = None,
    ) -> tuple[QuarantinedItem, list[Event]]:
        if status not in QUARANTINE_STATUSES:
            raise ValueError(f"unknown quarantine status {status!r}")

        def op(conn: sqlite3.Connection) -> tuple[QuarantinedItem, list[Event]]:
            before = self._quarantined(conn, item_id)
            retried = status == "retried" or (status == "new" and reason is not None)
            conn.execute(
                "UPDATE quarantine SET status=?, reason=COALESCE(?, reason),"
                " message_id=COALESCE(?, message_id), retries=retries+?, updated_at=?"
                " WHERE id=?",
                (status, reason, message_id, int(retried), now, item_id),
            )
            item = self._quarantined(conn, item_id)
            kind = {
                "retried": "quarantine.retried",
                "dismissed": "quarantine.dismissed",
                "new": "quarantine.retry_failed",
            }[status]
            if before.status == status and status != "new":
                return item, []
            return item, self._events(conn, now, [NewEvent(kind, {"quarantine": item.to_api()})])

        result: tuple[QuarantinedItem, list[Event]] = await self._tx(op)
        return result

    async def quarantine_unreviewed(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                str(r[0]): int(r[1])
                for r in conn.execute(
                    "SELECT channel, COUNT(*) FROM quarantine WHERE status='new' GROUP BY channel"
                )
            }

        result: dict[str, int] = await self._run(op)
        return result
