"""The event log of the SQLite store, read from a cursor, and its retention
(docs/eventlog.md). Events are appended by `SqliteBase._events` inside each transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.model import Event, Message, loads
from gateway.store.sqlite.rows import SqliteRows


class SqliteEventLog(SqliteRows):
    async def events_since(self, since: int, limit: int) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            events = [
                Event(r[0], r[1], r[2], loads(r[3]), r[3])
                for r in conn.execute(
                    "SELECT id, type, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (since, limit),
                )
            ]
            self._with_messages(conn, events)
            return events

        return await self._run(op)

    # Events stored with a `message_id` whose consumers get the whole message (the public
    # shape of the stream and webhooks), and what the message was when the event happened.
    _WITH_MESSAGE: dict[str, dict[str, Any]] = {
        "message.received": {},
        "message.queued": {"status": "queued", "provider_message_id": None, "reason": None},
    }

    def _with_messages(self, conn: sqlite3.Connection, events: list[Event]) -> None:
        """Put the message back into events stored with its id only (the log keeps ids and
        what changed; the message itself is in `messages`)."""
        slim = [e for e in events if e.type in self._WITH_MESSAGE and "message_id" in e.data]
        if not slim:
            return
        ids = sorted({str(e.data["message_id"]) for e in slim})
        found: dict[str, Message] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                f"SELECT {self._MSG_COLS} FROM messages WHERE id IN ({marks})", part
            ):
                found[row[0]] = self._msg(row)
        for event in slim:
            message = found.get(str(event.data["message_id"]))
            if message is None:
                continue  # gone (not expected): the ids are all there is
            shown = message.to_api() | self._WITH_MESSAGE[event.type]
            if self._WITH_MESSAGE[event.type]:
                shown["updated_at"] = shown["created_at"]
            data = {k: v for k, v in event.data.items() if k != "message_id"}
            event.data = data | {"message": shown}
            event.data_json = None

    async def last_event_id(self) -> int:
        return await self._run(
            lambda conn: int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        )

    @staticmethod
    def _pruned_through(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT value FROM kv WHERE namespace='events' AND key='pruned_through'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def events_pruned_through(self) -> int:
        return await self._run(self._pruned_through)

    async def prune_events(self, older_than: float, keep: int | None) -> int:
        batch = 5_000  # rows per transaction: writers wait at most one short delete

        def op(conn: sqlite3.Connection) -> int:
            # The newest event committed before the cutoff, found on the `at` index; ids
            # are in commit order, so everything up to it goes (a prefix of the log).
            row = conn.execute("SELECT MAX(id) FROM events WHERE at < ?", (older_than,)).fetchone()
            upto = int(row[0] or 0)
            if keep is not None:
                last = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
                upto = max(upto, last - keep)
            first = conn.execute("SELECT MIN(id) FROM events").fetchone()[0]
            if first is None or upto < first:
                return 0
            upto = min(upto, int(first) + batch - 1)
            removed = conn.execute("DELETE FROM events WHERE id <= ?", (upto,)).rowcount
            if upto > self._pruned_through(conn):
                conn.execute(
                    "INSERT INTO kv(namespace, key, value) VALUES ('events','pruned_through',?)"
                    " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                    (str(upto),),
                )
            return int(removed)

        total = 0
        while True:
            removed = await self._tx(op)
            total += removed
            if removed < batch:
                return total
