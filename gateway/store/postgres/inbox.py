"""The agent workspace on PostgreSQL (issue 14): list, counts, read markers, tags,
priority, snooze and full-text search (tsvector on the `simple` configuration with
unaccent where the server has it, GIN indexes: migration 7). The list and count SQL is
shared with SQLite (gateway/store/inbox.py), its `?` marks numbered here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.clock import iso
from gateway.domain import workspace as rules
from gateway.domain.lifecycle import State, TransitionRefused
from gateway.model import Conversation, Event, NewEvent
from gateway.store.base import NotFound, Scope, check_sees
from gateway.store.inbox import (
    MARK_CLOSE,
    MARK_OPEN,
    POSTGRES,
    ConversationItem,
    Counts,
    InboxStore,
    ListQuery,
    ReadMarker,
    SearchHit,
    SearchQuery,
    counts_row,
    counts_sql,
    item_row,
    item_sql,
    list_sql,
    priority_event,
    read_event,
    tag_event,
    wake_event,
)
from gateway.store.postgres.conversations import PgConversations
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, get_conv
from gateway.store.postgres.routing import adjust_load

Mutate = Callable[[Conn, Conversation], Awaitable[NewEvent]]


def numbered(sql: str) -> str:
    """`?` marks as `$1, $2, ...` (the workspace SQL has no other question mark)."""
    parts = sql.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        out += f"${i}" + part
    return out


def _state(conv: Conversation) -> State:
    return State(
        conv.status, conv.assignee, conv.assigned_at, conv.resolved_at, conv.first_response_at
    )


async def _snoozed(conn: Conn, conv: Conversation) -> bool:
    at = await conn.fetchval("SELECT at FROM snoozes WHERE conversation_id=$1", conv.id)
    return at is not None and conv.status == "pending" and (conv.last_inbound_at or 0) <= at


# The snoozes to settle: due, or ended early (the customer wrote, or it moved on).
_SETTLE = (
    " FROM snoozes s LEFT JOIN conversations c ON c.id = s.conversation_id"
    " WHERE c.id IS NULL OR c.status <> 'pending' OR COALESCE(c.last_inbound_at, 0) > s.at"
)


class PgInbox(PgConversations, InboxStore):
    # --- reads ------------------------------------------------------------------------------
    async def ws_list(self, query: ListQuery) -> list[ConversationItem]:
        sql, args = list_sql(query, POSTGRES)

        async def op(conn: Conn) -> list[ConversationItem]:
            return [item_row(r) for r in await conn.fetch(numbered(sql), *args)]

        return await self._read(op)

    async def ws_items(self, ids: list[str], reader: str) -> dict[str, ConversationItem]:
        if not ids:
            return {}
        sql, args = item_sql(ids, reader)

        async def op(conn: Conn) -> dict[str, ConversationItem]:
            items = [item_row(r) for r in await conn.fetch(numbered(sql), *args)]
            return {i.conversation.id: i for i in items}

        return await self._read(op)

    async def ws_counts(self, reader: str, agent: str | None, scope: Scope | None) -> Counts:
        sql, args = counts_sql(reader, agent, scope, POSTGRES)

        async def op(conn: Conn) -> Counts:
            row = await conn.fetchrow(numbered(sql), *args)
            assert row is not None  # an aggregate: always one row
            return counts_row(row)

        return await self._read(op)

    # --- read markers -------------------------------------------------------------------------
    async def ws_mark_read(
        self,
        conversation_id: str,
        reader: str,
        message_id: str | None,
        scope: Scope | None,
        now: float,
    ) -> tuple[ReadMarker, list[Event]]:
        async def op(conn: Conn) -> tuple[ReadMarker, list[Event]]:
            check_sees(scope, await get_conv(conn, conversation_id))
            if message_id is not None:
                row = await conn.fetchrow(
                    "SELECT id, created_at FROM messages WHERE id=$1 AND conversation_id=$2",
                    message_id,
                    conversation_id,
                )
                if row is None:
                    raise NotFound(f"message {message_id} not found in {conversation_id}")
            else:
                row = await conn.fetchrow(
                    "SELECT id, created_at FROM messages WHERE conversation_id=$1"
                    " ORDER BY created_at DESC, id DESC LIMIT 1",
                    conversation_id,
                )
            read_id, read_at = (row[0], float(row[1])) if row is not None else (None, now)
            # Markers never move back: the upsert only moves one forward.
            got = await conn.fetchrow(
                "INSERT INTO read_markers(reader, conversation_id, read_at, message_id)"
                " VALUES ($1,$2,$3,$4) ON CONFLICT(reader, conversation_id) DO UPDATE"
                " SET read_at=excluded.read_at, message_id=excluded.message_id"
                " WHERE read_markers.read_at < excluded.read_at RETURNING read_at",
                reader,
                conversation_id,
                read_at,
                read_id,
            )
            if got is None:
                old = await conn.fetchrow(
                    "SELECT read_at, message_id FROM read_markers"
                    " WHERE reader=$1 AND conversation_id=$2",
                    reader,
                    conversation_id,
                )
                assert old is not None  # the upsert found it
                return ReadMarker(conversation_id, reader, float(old[0]), old[1]), []
            marker = ReadMarker(conversation_id, reader, read_at, read_id)
            return marker, await append_events(conn, now, [read_event(marker)])

        return await self._tx(op)

    # --- changes ------------------------------------------------------------------------------
    async def ws_tags(
        self,
        conversation_id: str,
        add: list[str],
        remove: list[str],
        by: str | None,
        scope: Scope | None,
        now: float,
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            conv.tags, added, removed = rules.retag(conv.tags, add, remove)
            return tag_event(conv, added, removed, by)

        return await self._change(conversation_id, mutate, now, scope)

    async def ws_priority(
        self, conversation_id: str, priority: int, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            previous, conv.priority = conv.priority, priority
            return priority_event(conv, previous, by)

        return await self._change(conversation_id, mutate, now, scope)

    async def ws_snooze(
        self, conversation_id: str, until: float, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            conv.status = rules.snooze(_state(conv), until, now).status
            await conn.execute(
                "INSERT INTO snoozes(conversation_id, until, at, by) VALUES ($1,$2,$3,$4)"
                " ON CONFLICT(conversation_id) DO UPDATE"
                " SET until=excluded.until, at=excluded.at, by=excluded.by",
                conv.id,
                until,
                now,
                by,
            )
            return NewEvent(
                "conversation.snoozed",
                {"conversation_id": conv.id, "until": iso(until), "by": by},
            )

        return await self._change(conversation_id, mutate, now, scope)

    async def ws_wake(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            if not await _snoozed(conn, conv):
                raise TransitionRefused("the conversation is not snoozed")
            await conn.execute("DELETE FROM snoozes WHERE conversation_id=$1", conv.id)
            conv.status = rules.wake(_state(conv)).status
            return wake_event(conv, "manual", by)

        return await self._change(conversation_id, mutate, now, scope)

    async def ws_snooze_next_due(self) -> float | None:
        async def op(conn: Conn) -> float | None:
            if await conn.fetchval("SELECT 1" + _SETTLE + " LIMIT 1") is not None:
                return float("-inf")
            due = await conn.fetchval("SELECT MIN(until) FROM snoozes")
            return None if due is None else float(due)

        return await self._read(op)

    async def ws_snooze_fire(self, now: float) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            rows = await conn.fetch(
                "SELECT s.conversation_id, s.at FROM snoozes s"
                " LEFT JOIN conversations c ON c.id = s.conversation_id"
                " WHERE s.until <= $1 OR c.id IS NULL OR c.status <> 'pending'"
                " OR COALESCE(c.last_inbound_at, 0) > s.at"
                " ORDER BY s.conversation_id LIMIT 500 FOR UPDATE OF s SKIP LOCKED",
                now,
            )
            new: list[NewEvent] = []
            for conv_id, at in rows:
                await conn.execute("DELETE FROM snoozes WHERE conversation_id=$1", conv_id)
                try:
                    conv = await get_conv(conn, conv_id, lock=True)
                except NotFound:
                    continue
                if (conv.last_inbound_at or 0) > at:
                    new.append(wake_event(conv, "customer", None))
                    continue
                if conv.status != "pending":
                    continue
                before = (conv.assignee, conv.status)
                conv.status = rules.wake(_state(conv)).status
                await adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
                conv.updated_at = now
                await conn.execute(
                    "UPDATE conversations SET status=$1, updated_at=$2 WHERE id=$3",
                    conv.status,
                    now,
                    conv.id,
                )
                new.append(wake_event(conv, "timer", None))
            return await append_events(conn, now, new)

        return await self._tx(op)

    # --- search -------------------------------------------------------------------------------
    async def ws_search(self, query: SearchQuery) -> list[SearchHit]:
        if not query.words:
            return []
        tsq = " & ".join(f"'{w}':*" for w in query.words)
        args: list[Any] = [tsq]
        clause = ""
        if query.scope is not None:
            where, scope_args = query.scope.where("c.queue", "c.assignee")
            if where == "(0)":
                return []
            if where:
                clause = " AND " + where
                args.extend(scope_args)
        clause3 = clause.replace("c.queue", "c3.queue").replace("c.assignee", "c3.assignee")
        args.extend(args[1:])
        args.extend([query.limit + 1, query.offset])
        opts = f"StartSel={MARK_OPEN}, StopSel={MARK_CLOSE}, MaxWords=24, MinWords=8"
        doc = "coalesce(m.subject, '') || ' ' || m.text"
        sql = (
            "WITH q AS (SELECT to_tsquery('simple', switchboard_fold(?)) AS q),"
            " hits AS ("
            " SELECT 'message' AS kind, c.id AS conversation_id, m.id AS message_id,"
            " c.contact_id, m.created_at AS at,"
            f" ts_rank(to_tsvector('simple', switchboard_fold({doc})), q.q) AS rank"
            " FROM q, messages m JOIN conversations c ON c.id = m.conversation_id"
            f" WHERE to_tsvector('simple', switchboard_fold({doc})) @@ q.q"
            f" AND strpos(m.metadata, '\"verification\"') = 0{clause}"
            " UNION ALL"
            " SELECT 'contact', c.id, NULL, c.contact_id,"
            " COALESCE(c.last_message_at, c.created_at), 0.5"
            " FROM q, contacts ct"
            " JOIN conversations c ON c.id = (SELECT c3.id FROM conversations c3"
            f" WHERE c3.contact_id = COALESCE(ct.merged_into, ct.id){clause3}"
            " ORDER BY c3.created_at DESC, c3.id DESC LIMIT 1)"
            # Each side read from its GIN index (an OR across them would scan).
            " WHERE ct.id IN (SELECT c1.id FROM contacts c1"
            " WHERE to_tsvector('simple', switchboard_fold(c1.name)) @@ q.q"
            " UNION SELECT i.contact_id FROM identities i"
            " WHERE to_tsvector('simple', switchboard_fold(regexp_replace(i.address,"
            " '[^[:alnum:]]+', ' ', 'g'))) @@ q.q)"
            " ), page AS (SELECT * FROM hits ORDER BY rank DESC, at DESC LIMIT ? OFFSET ?)"
            " SELECT p.kind, p.conversation_id, p.message_id, p.contact_id,"
            # The text as written when a word matched it so; else (the query matched only
            # with accents folded) the folded text, so the snippet shows the match.
            f" CASE WHEN strpos(h.h, '{MARK_OPEN}') > 0 THEN h.h"
            f" ELSE ts_headline('simple', switchboard_fold(h.doc), q.q, '{opts}') END,"
            " p.rank, p.at"
            " FROM page p CROSS JOIN q LEFT JOIN messages m ON m.id = p.message_id"
            " LEFT JOIN contacts ct ON ct.id = p.contact_id"
            " CROSS JOIN LATERAL (SELECT d.doc, ts_headline('simple', d.doc, q.q, "
            f"'{opts}') AS h FROM (SELECT CASE WHEN p.kind = 'message' THEN {doc}"
            " ELSE coalesce(ct.name, '') || ' ' || coalesce((SELECT string_agg(i.address, ' ')"
            " FROM identities i WHERE i.contact_id = ct.id), '') END AS doc) d) h"
            " ORDER BY p.rank DESC, p.at DESC"
        )

        async def op(conn: Conn) -> list[SearchHit]:
            return [
                SearchHit(r[0], r[1], r[2], r[3], r[4] or "", r[6], float(r[5]))
                for r in await conn.fetch(numbered(sql), *args)
            ]

        return await self._read(op)
