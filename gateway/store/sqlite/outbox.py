"""The outbox of the SQLite store: replies waiting to be delivered, leased to one sender
at a time, and the delivery receipts that follow them."""

from __future__ import annotations

import sqlite3

from connectors.base import DeliveryResult, Identity
from gateway.model import Event, NewEvent, loads
from gateway.store.base import OutboxItem
from gateway.store.sqlite.rows import SqliteRows

_STATUS_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


class SqliteOutbox(SqliteRows):
    async def apply_receipt(
        self, channel: str, provider_message_id: str, status: str, reason: str | None, now: float
    ) -> list[Event]:
        return await self._tx(
            lambda conn: self._apply_receipt(
                conn, channel, provider_message_id, status, reason, now
            )
        )

    def _apply_receipt(
        self,
        conn: sqlite3.Connection,
        channel: str,
        provider_message_id: str,
        status: str,
        reason: str | None,
        now: float,
    ) -> list[Event]:
        row = conn.execute(
            "SELECT id, status FROM messages WHERE channel=? AND provider_message_id=? AND direction='out'",
            (channel, provider_message_id),
        ).fetchone()
        if row is None:
            # The provider can answer before our send is recorded: keep it for outbox_record.
            # (Receipts for ids we never sent stay here; they are small and never match.)
            conn.execute(
                "INSERT OR IGNORE INTO early_receipts(channel, provider_message_id, status, reason, at)"
                " VALUES (?,?,?,?,?)",
                (channel, provider_message_id, status, reason, now),
            )
            return []
        current = row[1]
        if current == "failed" or (
            status != "failed" and _STATUS_ORDER.get(status, 0) <= _STATUS_ORDER.get(current, 0)
        ):
            return []
        conn.execute(
            "UPDATE messages SET status=?, reason=?, updated_at=? WHERE id=?",
            (status, reason, now, row[0]),
        )
        m = self._get_msg(conn, row[0])
        return self._events(
            conn,
            now,
            [
                NewEvent(
                    f"message.{status}",
                    {"conversation_id": m.conversation_id, "message": m.to_api()},
                )
            ],
        )

    # --- outbox ----------------------------------------------------------------------------
    async def outbox_lease(self, now: float, limit: int, lease_seconds: float) -> list[OutboxItem]:
        def op(conn: sqlite3.Connection) -> list[OutboxItem]:
            rows = conn.execute(
                "SELECT o.message_id, o.attempts, m.conversation_id, m.channel, m.text, m.html,"
                " COALESCE(m.subject, c.subject),"
                " m.automated, COALESCE(o.to_kind, c.reply_kind), COALESCE(o.to_address, c.reply_address),"
                " c.thread_token, m.sender_id, m.created_at, json_extract(m.metadata, '$.prompt'), m.attachments"
                " FROM outbox o JOIN messages m ON m.id = o.message_id"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?)"
                # Replies leave one conversation in order: none overtakes an earlier one on
                # the same channel (a code mailed on the side never holds up the chat).
                " AND NOT EXISTS (SELECT 1 FROM outbox o2 JOIN messages m2 ON m2.id = o2.message_id"
                " WHERE m2.conversation_id = m.conversation_id AND m2.channel = m.channel"
                " AND (m2.created_at < m.created_at OR (m2.created_at = m.created_at AND m2.id < m.id)))"
                " ORDER BY o.next_attempt_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            items = []
            for r in rows:
                conn.execute(
                    "UPDATE outbox SET lease_until=? WHERE message_id=?",
                    (now + lease_seconds, r[0]),
                )
                refs = [
                    x[0]
                    for x in conn.execute(
                        "SELECT provider_message_id FROM messages WHERE conversation_id=? AND"
                        " provider_message_id IS NOT NULL AND created_at <= (SELECT created_at FROM messages WHERE id=?)"
                        " ORDER BY created_at",
                        (r[2], r[0]),
                    ).fetchall()
                ]
                items.append(
                    OutboxItem(
                        message_id=r[0],
                        conversation_id=r[2],
                        channel=r[3],
                        to=Identity(r[8], r[9]),
                        text=r[4],
                        attempts=r[1],
                        html=r[5],
                        subject=r[6],
                        thread_refs=refs,
                        thread_token=r[10],
                        automatic=bool(r[7]),
                        sender_name=r[11],
                        queued_at=r[12],
                        prompt=loads(r[13]) if r[13] else None,
                        attachments=loads(r[14]) if r[14] else [],
                    )
                )
            return items

        return await self._tx(op)

    async def outbox_record(
        self, message_id: str, result: DeliveryResult, next_attempt_at: float | None, now: float
    ) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            row = conn.execute(
                "SELECT attempts FROM outbox WHERE message_id=?", (message_id,)
            ).fetchone()
            if row is None:
                return []
            early: list[tuple[str, str | None]] = []
            if result.status == "sent":
                conn.execute("DELETE FROM outbox WHERE message_id=?", (message_id,))
                conn.execute(
                    "UPDATE messages SET status='sent', provider_message_id=?, reason=NULL, updated_at=? WHERE id=?",
                    (result.provider_message_id, now, message_id),
                )
                kind = "message.sent"
                early = self._early_receipts(conn, message_id, result.provider_message_id)
            elif result.status == "retry" and next_attempt_at is not None:
                conn.execute(
                    "UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, lease_until=NULL, last_error=?"
                    " WHERE message_id=?",
                    (next_attempt_at, result.reason, message_id),
                )
                return []
            else:
                conn.execute("DELETE FROM outbox WHERE message_id=?", (message_id,))
                conn.execute(
                    "UPDATE messages SET status='failed', reason=?, updated_at=? WHERE id=?",
                    (result.reason or "delivery failed", now, message_id),
                )
                kind = "message.failed"
            m = self._get_msg(conn, message_id)
            events = self._events(
                conn,
                now,
                [NewEvent(kind, {"conversation_id": m.conversation_id, "message": m.to_api()})],
            )
            for status, reason in early:
                events += self._apply_receipt(
                    conn, m.channel, result.provider_message_id or "", status, reason, now
                )
            return events

        return await self._tx(op)

    @staticmethod
    def _early_receipts(
        conn: sqlite3.Connection, message_id: str, provider_message_id: str | None
    ) -> list[tuple[str, str | None]]:
        """Receipts that arrived before the send was recorded, oldest first; removed."""
        if not provider_message_id:
            return []
        channel = conn.execute("SELECT channel FROM messages WHERE id=?", (message_id,)).fetchone()[
            0
        ]
        rows = conn.execute(
            "SELECT status, reason FROM early_receipts WHERE channel=? AND provider_message_id=?"
            " ORDER BY at",
            (channel, provider_message_id),
        ).fetchall()
        conn.execute(
            "DELETE FROM early_receipts WHERE channel=? AND provider_message_id=?",
            (channel, provider_message_id),
        )
        return [(str(r[0]), r[1]) for r in rows]

    async def outbox_next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM outbox"
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._run(op)

    async def outbox_release_all(self) -> int:
        return await self._tx(
            lambda conn: conn.execute("UPDATE outbox SET lease_until=NULL").rowcount
        )
