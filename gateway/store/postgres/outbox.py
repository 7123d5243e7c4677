"""The outbox on PostgreSQL: replies waiting to leave, leased by the instance that sends them.

Each item records which instance holds it (`holder`) and until when (`lease_until`). A
lease is taken with `FOR UPDATE SKIP LOCKED`: instances leasing at the same moment take
different items and never wait for each other; an item held by a live instance is not due
for anyone else until its lease runs out, and then any instance takes it over.
"""

from __future__ import annotations

from connectors.base import DeliveryResult, Identity
from gateway.model import Event, NewEvent, loads
from gateway.store.base import OutboxItem, OutboxStore
from gateway.store.postgres import rules
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase, get_msg, rowcount

_DUE = (
    "SELECT o.message_id FROM outbox o JOIN messages m ON m.id = o.message_id"
    " WHERE o.next_attempt_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1)"
    # Replies leave one conversation in order: none overtakes an earlier one on the same
    # channel (a code mailed on the side never holds up the chat).
    " AND NOT EXISTS (SELECT 1 FROM outbox o2 JOIN messages m2 ON m2.id = o2.message_id"
    " WHERE m2.conversation_id = m.conversation_id AND m2.channel = m.channel"
    " AND (m2.created_at < m.created_at OR (m2.created_at = m.created_at AND m2.id < m.id)))"
    " ORDER BY o.next_attempt_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED"
)


class PgOutbox(PgBase, OutboxStore):
    async def apply_receipt(
        self, channel: str, provider_message_id: str, status: str, reason: str | None, now: float
    ) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            new = await apply_receipt(conn, channel, provider_message_id, status, reason, now)
            return await append_events(conn, now, new)

        return await self._tx(op)

    async def outbox_lease(self, now: float, limit: int, lease_seconds: float) -> list[OutboxItem]:
        async def op(conn: Conn) -> list[OutboxItem]:
            ids = [r[0] for r in await conn.fetch(_DUE, now, limit)]
            if not ids:
                return []
            await conn.execute(
                "UPDATE outbox SET lease_until=$1, holder=$2 WHERE message_id = ANY($3)",
                now + lease_seconds,
                self.instance,
                ids,
            )
            rows = await conn.fetch(
                "SELECT o.message_id, o.attempts, m.conversation_id, m.channel, m.text, m.html,"
                " COALESCE(m.subject, c.subject), m.automated,"
                " COALESCE(o.to_kind, c.reply_kind), COALESCE(o.to_address, c.reply_address),"
                " c.thread_token, m.sender_id, m.created_at,"
                " ARRAY(SELECT p.provider_message_id FROM messages p"
                "  WHERE p.conversation_id = m.conversation_id"
                "  AND p.provider_message_id IS NOT NULL AND p.created_at <= m.created_at"
                "  ORDER BY p.created_at),"
                " m.metadata::jsonb -> 'prompt', m.attachments"
                " FROM outbox o JOIN messages m ON m.id = o.message_id"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE o.message_id = ANY($1) ORDER BY o.next_attempt_at",
                ids,
            )
            return [
                OutboxItem(
                    message_id=r[0],
                    conversation_id=r[2],
                    channel=r[3],
                    to=Identity(r[8], r[9]),
                    text=r[4],
                    attempts=r[1],
                    html=r[5],
                    subject=r[6],
                    thread_refs=list(r[13]),
                    thread_token=r[10],
                    automatic=bool(r[7]),
                    sender_name=r[11],
                    queued_at=r[12],
                    prompt=loads(r[14]) if r[14] else None,
                    attachments=loads(r[15]) if r[15] else [],
                )
                for r in rows
            ]

        return await self._tx(op)

    async def outbox_record(
        self, message_id: str, result: DeliveryResult, next_attempt_at: float | None, now: float
    ) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            row = await conn.fetchrow(
                "SELECT attempts FROM outbox WHERE message_id=$1 FOR UPDATE", message_id
            )
            if row is None:
                return []
            early: list[tuple[str, str | None]] = []
            if result.status == "sent":
                await conn.execute("DELETE FROM outbox WHERE message_id=$1", message_id)
                await conn.execute(
                    "UPDATE messages SET status='sent', provider_message_id=$1, reason=NULL,"
                    " updated_at=$2 WHERE id=$3",
                    result.provider_message_id,
                    now,
                    message_id,
                )
                kind = "message.sent"
                early = await _early_receipts(conn, message_id, result.provider_message_id)
            elif result.status == "retry" and next_attempt_at is not None:
                await conn.execute(
                    "UPDATE outbox SET attempts=attempts+1, next_attempt_at=$1, lease_until=NULL,"
                    " holder=NULL, last_error=$2 WHERE message_id=$3",
                    next_attempt_at,
                    result.reason,
                    message_id,
                )
                return []
            else:
                await conn.execute("DELETE FROM outbox WHERE message_id=$1", message_id)
                await conn.execute(
                    "UPDATE messages SET status='failed', reason=$1, updated_at=$2 WHERE id=$3",
                    result.reason or "delivery failed",
                    now,
                    message_id,
                )
                kind = "message.failed"
            m = await get_msg(conn, message_id)
            new = [NewEvent(kind, {"conversation_id": m.conversation_id, "message": m.to_api()})]
            for status, reason in early:
                new += await apply_receipt(
                    conn, m.channel, result.provider_message_id or "", status, reason, now
                )
            return await append_events(conn, now, new)

        return await self._tx(op)

    async def outbox_next_due(self) -> float | None:
        async def op(conn: Conn) -> float | None:
            due = await conn.fetchval(
                "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM outbox"
            )
            return None if due is None else float(due)

        return await self._read(op)

    async def outbox_release_all(self) -> int:
        """Drop the leases this store object (its `instance`) holds. Another instance's
        leases stay: a live one is sending them, a dead one's run out and are taken over."""

        async def op(conn: Conn) -> int:
            status = await conn.execute(
                "UPDATE outbox SET lease_until=NULL, holder=NULL WHERE holder=$1", self.instance
            )
            return rowcount(status)

        return await self._tx(op)


async def apply_receipt(
    conn: Conn, channel: str, provider_message_id: str, status: str, reason: str | None, now: float
) -> list[NewEvent]:
    """A delivery receipt; its events, to be appended by the caller."""
    row = await conn.fetchrow(
        "SELECT id, status FROM messages WHERE channel=$1 AND provider_message_id=$2"
        " AND direction='out' FOR UPDATE",
        channel,
        provider_message_id,
    )
    if row is None:
        # The provider can answer before our send is recorded: keep it for outbox_record.
        await conn.execute(
            "INSERT INTO early_receipts(channel, provider_message_id, status, reason, at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            channel,
            provider_message_id,
            status,
            reason,
            now,
        )
        return []
    if not rules.receipt_applies(row[1], status):
        return []
    await conn.execute(
        "UPDATE messages SET status=$1, reason=$2, updated_at=$3 WHERE id=$4",
        status,
        reason,
        now,
        row[0],
    )
    m = await get_msg(conn, row[0])
    return [
        NewEvent(f"message.{status}", {"conversation_id": m.conversation_id, "message": m.to_api()})
    ]


async def _early_receipts(
    conn: Conn, message_id: str, provider_message_id: str | None
) -> list[tuple[str, str | None]]:
    """Receipts that arrived before the send was recorded, oldest first; removed."""
    if not provider_message_id:
        return []
    channel = await conn.fetchval("SELECT channel FROM messages WHERE id=$1", message_id)
    rows = await conn.fetch(
        "DELETE FROM early_receipts WHERE channel=$1 AND provider_message_id=$2"
        " RETURNING status, reason, at",
        channel,
        provider_message_id,
    )
    return [(str(r[0]), r[1]) for r in sorted(rows, key=lambda r: r[2])]
