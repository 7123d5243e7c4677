"""The quarantine on PostgreSQL: inbound items the gateway could not take, kept as they came."""

from __future__ import annotations

import json
from typing import Any

from gateway.ids import new_id
from gateway.model import Event, NewEvent
from gateway.store.base import QUARANTINE_STATUSES, NotFound, QuarantinedItem, QuarantineStore
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase
from gateway.store.rows import QUARANTINE_COLS, quarantine_row


async def _quarantined(conn: Conn, item_id: str, lock: bool = False) -> QuarantinedItem:
    row = await conn.fetchrow(
        f"SELECT {QUARANTINE_COLS} FROM quarantine WHERE id=$1" + (" FOR UPDATE" if lock else ""),
        item_id,
    )
    if row is None:
        raise NotFound(f"quarantined item {item_id} not found")
    return quarantine_row(row)


class PgQuarantine(PgBase, QuarantineStore):
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

        async def op(conn: Conn) -> tuple[QuarantinedItem, list[Event]]:
            await conn.execute(
                "INSERT INTO quarantine(id, channel, content_type, data, external_id, reason,"
                " metadata, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8)",
                item_id,
                channel,
                content_type,
                data,
                external_id,
                reason,
                json.dumps(metadata or {}, default=str),
                now,
            )
            item = await _quarantined(conn, item_id)
            return item, await append_events(
                conn, now, [NewEvent("message.quarantined", {"quarantine": item.to_api()})]
            )

        return await self._tx(op)

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
            args.append(status)
            where.append(f"status=${len(args)}")
        if channel is not None:
            args.append(channel)
            where.append(f"channel=${len(args)}")
        if cursor is not None:  # keyset on insertion order (ids made in one ms may not sort)
            args.append(cursor)
            where.append(f"seq < (SELECT seq FROM quarantine WHERE id=${len(args)})")
        sql = f"SELECT {QUARANTINE_COLS} FROM quarantine"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(limit + 1)
        sql += f" ORDER BY seq DESC LIMIT ${len(args)}"

        async def op(conn: Conn) -> tuple[list[QuarantinedItem], str | None]:
            rows = [quarantine_row(r) for r in await conn.fetch(sql, *args)]
            more = len(rows) > limit
            rows = rows[:limit]
            return rows, (rows[-1].id if more and rows else None)

        return await self._read(op)

    async def quarantine_get(self, item_id: str) -> tuple[QuarantinedItem, bytes]:
        async def op(conn: Conn) -> tuple[QuarantinedItem, bytes]:
            item = await _quarantined(conn, item_id)
            data = await conn.fetchval("SELECT data FROM quarantine WHERE id=$1", item_id)
            return item, bytes(data)

        return await self._read(op)

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

        async def op(conn: Conn) -> tuple[QuarantinedItem, list[Event]]:
            before = await _quarantined(conn, item_id, lock=True)
            retried = status == "retried" or (status == "new" and reason is not None)
            await conn.execute(
                "UPDATE quarantine SET status=$1, reason=COALESCE($2, reason),"
                " message_id=COALESCE($3, message_id), retries=retries+$4, updated_at=$5"
                " WHERE id=$6",
                status,
                reason,
                message_id,
                int(retried),
                now,
                item_id,
            )
            item = await _quarantined(conn, item_id)
            kind = {
                "retried": "quarantine.retried",
                "dismissed": "quarantine.dismissed",
                "new": "quarantine.retry_failed",
            }[status]
            if before.status == status and status != "new":
                return item, []
            return item, await append_events(
                conn, now, [NewEvent(kind, {"quarantine": item.to_api()})]
            )

        return await self._tx(op)

    async def quarantine_unreviewed(self) -> dict[str, int]:
        async def op(conn: Conn) -> dict[str, int]:
            return {
                str(r[0]): int(r[1])
                for r in await conn.fetch(
                    "SELECT channel, COUNT(*) FROM quarantine WHERE status='new' GROUP BY channel"
                )
            }

        return await self._read(op)
