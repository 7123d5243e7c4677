"""The event log on PostgreSQL: appending in commit order, reading from a cursor, retention.

The ordering rule (docs/eventlog.md): an event's id is its place in commit order. A
sequence would break it (ids drawn at insert, committed later in any order), so ids come
from the one-row counter `event_head`, taken by `append_events` as the last thing a
transaction does: the row lock of that `UPDATE` is held until the commit, so a second
writer (another connection, another host) waits there and draws its ids after the first
has committed. A transaction that rolls back gives its ids back: no holes.
"""

from __future__ import annotations

from typing import Any

from gateway.model import Event, Message, NewEvent, dumps, loads
from gateway.store.base import EventLogStore
from gateway.store.postgres.pool import MSG_COLS, Conn, PgBase, msg_row, rowcount
from gateway.store.postgres.stamps import stamp_events

# Events stored with a `message_id` whose consumers get the whole message (the public
# shape of the stream and webhooks), and what the message was when the event happened.
WITH_MESSAGE: dict[str, dict[str, Any]] = {
    "message.received": {},
    "message.queued": {"status": "queued", "provider_message_id": None, "reason": None},
}
PRUNE_BATCH = 5_000  # rows per transaction: writers wait at most one short delete


async def append_events(conn: Conn, now: float, new: list[NewEvent]) -> list[Event]:
    """Append `new` to the log. Call it once per transaction, as its last statement: from
    here to the commit every other writer of events waits."""
    if not new:
        return []
    await stamp_events(conn, now, new)  # before the head: see stamps.py
    encoded = [dumps(ev.data) for ev in new]
    # One statement, one round trip: draw the ids and insert the events.
    last = int(
        await conn.fetchval(
            "WITH head AS (UPDATE event_head SET seq = seq + $1 RETURNING seq),"
            " added AS (INSERT INTO events(id, type, at, data)"
            " SELECT head.seq - $1 + e.n, e.type, $2, e.data FROM head,"
            " unnest($3::text[], $4::text[]) WITH ORDINALITY AS e(type, data, n))"
            " SELECT seq FROM head",
            len(new),
            now,
            [ev.type for ev in new],
            encoded,
        )
    )
    ids = list(range(last - len(new) + 1, last + 1))
    return [
        Event(i, ev.type, now, ev.data, data) for i, ev, data in zip(ids, new, encoded, strict=True)
    ]


async def with_messages(conn: Conn, events: list[Event]) -> None:
    """Put the message back into events stored with its id only."""
    slim = [e for e in events if e.type in WITH_MESSAGE and "message_id" in e.data]
    if not slim:
        return
    ids = sorted({str(e.data["message_id"]) for e in slim})
    found: dict[str, Message] = {
        row[0]: msg_row(row)
        for row in await conn.fetch(f"SELECT {MSG_COLS} FROM messages WHERE id = ANY($1)", ids)
    }
    for event in slim:
        message = found.get(str(event.data["message_id"]))
        if message is None:
            continue  # gone (not expected): the ids are all there is
        shown = message.to_api() | WITH_MESSAGE[event.type]
        if WITH_MESSAGE[event.type]:
            shown["updated_at"] = shown["created_at"]
        data = {k: v for k, v in event.data.items() if k != "message_id"}
        event.data = data | {"message": shown}
        event.data_json = None


async def pruned_through(conn: Conn) -> int:
    value = await conn.fetchval(
        "SELECT value FROM kv WHERE namespace='events' AND key='pruned_through'"
    )
    return 0 if value is None else int(value)


class PgEventLog(PgBase, EventLogStore):
    async def events_since(self, since: int, limit: int) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            events = [
                Event(r[0], r[1], r[2], loads(r[3]), r[3])
                for r in await conn.fetch(
                    "SELECT id, type, at, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                    since,
                    limit,
                )
            ]
            await with_messages(conn, events)
            return events

        return await self._read(op)

    async def last_event_id(self) -> int:
        async def op(conn: Conn) -> int:
            return int(await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))

        return await self._read(op)

    async def events_pruned_through(self) -> int:
        return await self._read(pruned_through)

    async def prune_events(self, older_than: float, keep: int | None) -> int:
        async def op(conn: Conn) -> int:
            # Ids are in commit order: everything up to the newest event committed before
            # the cutoff goes (a prefix of the log).
            upto = int(
                await conn.fetchval(
                    "SELECT COALESCE(MAX(id), 0) FROM events WHERE at < $1", older_than
                )
            )
            if keep is not None:
                last = int(await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))
                upto = max(upto, last - keep)
            first = await conn.fetchval("SELECT MIN(id) FROM events")
            if first is None or upto < first:
                return 0
            upto = min(upto, int(first) + PRUNE_BATCH - 1)
            status = await conn.execute("DELETE FROM events WHERE id <= $1", upto)
            await conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ('events', 'pruned_through', $1)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value"
                " WHERE kv.value::bigint < excluded.value::bigint",
                str(upto),
            )
            return rowcount(status)

        total = 0
        while True:
            removed = await self._tx(op)
            total += removed
            if removed < PRUNE_BATCH:
                return total
