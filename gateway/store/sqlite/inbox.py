"""The agent workspace on SQLite (issue 14): list, counts, read markers, tags, priority,
snooze and full-text search (FTS5, migration 17). The SQL of the list and the counts is
shared with PostgreSQL: gateway/store/inbox.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.clock import iso
from gateway.domain import workspace as rules
from gateway.domain.lifecycle import State, TransitionRefused
from gateway.model import Conversation, Event, NewEvent
from gateway.store.base import NotFound, Scope, check_sees
from gateway.store.inbox import (
    MARK_CLOSE,
    MARK_OPEN,
    SQLITE,
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
from gateway.store.sqlite.conversations import SqliteConversations

Mutate = Callable[[sqlite3.Connection, Conversation], NewEvent]


def _state(conv: Conversation) -> State:
    return State(
        conv.status, conv.assignee, conv.assigned_at, conv.resolved_at, conv.first_response_at
    )


def _snoozed(conn: sqlite3.Connection, conv: Conversation) -> bool:
    """Whether the conversation's snooze still counts (gateway/domain/workspace.py)."""
    row = conn.execute("SELECT at FROM snoozes WHERE conversation_id=?", (conv.id,)).fetchone()
    return (
        row is not None
        and conv.status == "pending"
        and (conv.last_inbound_at or 0) <= float(row[0])
    )


class SqliteInbox(SqliteConversations, InboxStore):
    # --- reads ------------------------------------------------------------------------------
    async def ws_list(self, query: ListQuery) -> list[ConversationItem]:
        sql, args = list_sql(query, SQLITE)
        return await self._run(lambda conn: [item_row(r) for r in conn.execute(sql, args)])

    async def ws_items(self, ids: list[str], reader: str) -> dict[str, ConversationItem]:
        if not ids:
            return {}
        sql, args = item_sql(ids, reader)

        def op(conn: sqlite3.Connection) -> dict[str, ConversationItem]:
            items = [item_row(r) for r in conn.execute(sql, args)]
            return {i.conversation.id: i for i in items}

        return await self._run(op)

    async def ws_counts(self, reader: str, agent: str | None, scope: Scope | None) -> Counts:
        sql, args = counts_sql(reader, agent, scope, SQLITE)
        return await self._run(lambda conn: counts_row(conn.execute(sql, args).fetchone()))

    # --- read markers -------------------------------------------------------------------------
    async def ws_mark_read(
        self,
        conversation_id: str,
        reader: str,
        message_id: str | None,
        scope: Scope | None,
        now: float,
    ) -> tuple[ReadMarker, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[ReadMarker, list[Event]]:
            check_sees(scope, self._get_conv(conn, conversation_id))
            if message_id is not None:
                row = conn.execute(
                    "SELECT id, created_at FROM messages WHERE id=? AND conversation_id=?",
                    (message_id, conversation_id),
                ).fetchone()
                if row is None:
                    raise NotFound(f"message {message_id} not found in {conversation_id}")
            else:
                row = conn.execute(
                    "SELECT id, created_at FROM messages WHERE conversation_id=?"
                    " ORDER BY created_at DESC, id DESC LIMIT 1",
                    (conversation_id,),
                ).fetchone()
            read_id, read_at = (row[0], float(row[1])) if row is not None else (None, now)
            old = conn.execute(
                "SELECT read_at, message_id FROM read_markers WHERE reader=? AND conversation_id=?",
                (reader, conversation_id),
            ).fetchone()
            if old is not None and float(old[0]) >= read_at:  # markers never move back
                return ReadMarker(conversation_id, reader, float(old[0]), old[1]), []
            conn.execute(
                "INSERT INTO read_markers(reader, conversation_id, read_at, message_id)"
                " VALUES (?,?,?,?) ON CONFLICT(reader, conversation_id) DO UPDATE"
                " SET read_at=excluded.read_at, message_id=excluded.message_id",
                (reader, conversation_id, read_at, read_id),
            )
            marker = ReadMarker(conversation_id, reader, read_at, read_id)
            return marker, self._events(conn, now, [read_event(marker)])

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
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            conv.tags, added, removed = rules.retag(conv.tags, add, remove)
            return tag_event(conv, added, removed, by)

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def ws_priority(
        self, conversation_id: str, priority: int, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            previous, conv.priority = conv.priority, priority
            return priority_event(conv, previous, by)

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def ws_snooze(
        self, conversation_id: str, until: float, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            conv.status = rules.snooze(_state(conv), until, now).status
            conn.execute(
                "INSERT INTO snoozes(conversation_id, until, at, by) VALUES (?,?,?,?)"
                " ON CONFLICT(conversation_id) DO UPDATE"
                " SET until=excluded.until, at=excluded.at, by=excluded.by",
                (conv.id, until, now, by),
            )
            return NewEvent(
                "conversation.snoozed",
                {"conversation_id": conv.id, "until": iso(until), "by": by},
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def ws_wake(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if not _snoozed(conn, conv):
                raise TransitionRefused("the conversation is not snoozed")
            conn.execute("DELETE FROM snoozes WHERE conversation_id=?", (conv.id,))
            conv.status = rules.wake(_state(conv)).status
            return wake_event(conv, "manual", by)

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def ws_snooze_next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            ended = conn.execute(
                "SELECT 1 FROM snoozes s LEFT JOIN conversations c ON c.id = s.conversation_id"
                " WHERE c.id IS NULL OR c.status != 'pending'"
                " OR COALESCE(c.last_inbound_at, 0) > s.at LIMIT 1"
            ).fetchone()
            if ended is not None:
                return float("-inf")
            row = conn.execute("SELECT MIN(until) FROM snoozes").fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(op)

    async def ws_snooze_fire(self, now: float) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT s.conversation_id, s.until, s.at FROM snoozes s"
                " LEFT JOIN conversations c ON c.id = s.conversation_id"
                " WHERE s.until <= ? OR c.id IS NULL OR c.status != 'pending'"
                " OR COALESCE(c.last_inbound_at, 0) > s.at LIMIT 500",
                (now,),
            ).fetchall()
            new: list[NewEvent] = []
            for conv_id, _until, at in rows:
                conn.execute("DELETE FROM snoozes WHERE conversation_id=?", (conv_id,))
                try:
                    conv = self._get_conv(conn, conv_id)
                except NotFound:
                    continue
                if (conv.last_inbound_at or 0) > float(at):
                    # The customer wrote: it is back already (gateway/domain/lifecycle.py).
                    new.append(wake_event(conv, "customer", None))
                    continue
                if conv.status != "pending":
                    continue  # resolved, transferred, answered...: nothing to wake
                before = (conv.assignee, conv.status)
                conv.status = rules.wake(_state(conv)).status
                self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
                conv.updated_at = now
                conn.execute(
                    "UPDATE conversations SET status=?, updated_at=? WHERE id=?",
                    (conv.status, now, conv.id),
                )
                new.append(wake_event(conv, "timer", None))
            return self._events(conn, now, new)

        return await self._tx(op)

    # --- search -------------------------------------------------------------------------------
    async def ws_search(self, query: SearchQuery) -> list[SearchHit]:
        if not query.words:
            return []
        match = " ".join(f'"{w}"*' for w in query.words)
        clause, scope_args = "", list[str]()
        if query.scope is not None:
            clause, scope_args = query.scope.where("c.queue", "c.assignee")
        seen = f" AND {clause}" if clause else ""
        seen3 = seen.replace("c.queue", "c3.queue").replace("c.assignee", "c3.assignee")
        sql = (
            "SELECT * FROM ("
            " SELECT 'message', c.id, m.id, c.contact_id,"
            f" snippet(messages_fts, -1, '{MARK_OPEN}', '{MARK_CLOSE}', '…', 16),"
            " bm25(messages_fts), m.created_at"
            " FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            f" WHERE messages_fts MATCH ?{seen}"
            " UNION ALL"
            " SELECT 'contact', c.id, NULL, c.contact_id,"
            f" snippet(contacts_fts, -1, '{MARK_OPEN}', '{MARK_CLOSE}', '…', 16),"
            " bm25(contacts_fts), COALESCE(c.last_message_at, c.created_at)"
            " FROM contacts_fts JOIN contacts ct ON ct.rowid = contacts_fts.rowid"
            " JOIN conversations c ON c.id = (SELECT c3.id FROM conversations c3"
            f" WHERE c3.contact_id = COALESCE(ct.merged_into, ct.id){seen3}"
            " ORDER BY c3.created_at DESC, c3.id DESC LIMIT 1)"
            " WHERE contacts_fts MATCH ?"
            ") ORDER BY 6, 7 DESC LIMIT ? OFFSET ?"
        )
        args = [match, *scope_args, *scope_args, match, query.limit + 1, query.offset]

        def op(conn: sqlite3.Connection) -> list[SearchHit]:
            return [
                SearchHit(r[0], r[1], r[2], r[3], r[4] or "", r[6], float(r[5]))
                for r in conn.execute(sql, args)
            ]

        return await self._run(op)
