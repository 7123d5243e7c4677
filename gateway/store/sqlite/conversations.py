"""Conversations and messages of the SQLite store: ingest (with group commit), replies,
the lifecycle of a conversation and the queries behind the API."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

from connectors.base import Identity
from gateway.ids import new_id
from gateway.model import AgentState, Conversation, Event, Message, NewEvent, dumps, loads
from gateway.store.base import (
    Conflict,
    ConversationFilter,
    IngestOutcome,
    IngestRequest,
    NotFound,
    OutboundRequest,
    Scope,
    check_acts,
    check_sees,
)
from gateway.store.sqlite.blobs import put_blobs
from gateway.store.sqlite.rows import SqliteRows


class SqliteConversations(SqliteRows):
    # --- ingest ----------------------------------------------------------------------------
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        """Group commit: ingests that arrive while a transaction is in flight share the next
        one. A caller's answer comes after the COMMIT that holds its message, so durability
        is unchanged; the commit cost is shared. A batch first runs without savepoints (no
        journal to keep); if one of its ingests fails, the transaction rolls back and the
        batch runs again with each ingest in its own savepoint, so only that one fails."""
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_ingests())
        return await future

    async def _flush_ingests(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self.batch_limit],
                self._pending[self.batch_limit :],
            )

            def whole(
                conn: sqlite3.Connection, batch: list[tuple[IngestRequest, Any]] = batch
            ) -> list[IngestOutcome | Exception]:
                return [self._ingest(conn, request) for request, _ in batch]

            def each(
                conn: sqlite3.Connection, batch: list[tuple[IngestRequest, Any]] = batch
            ) -> list[IngestOutcome | Exception]:
                results: list[IngestOutcome | Exception] = []
                for request, _ in batch:
                    conn.execute("SAVEPOINT ingest")
                    try:
                        results.append(self._ingest(conn, request))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO ingest")
                        results.append(exc)
                    conn.execute("RELEASE ingest")
                return results

            outcomes: list[IngestOutcome | Exception]
            try:
                outcomes = await self._tx(whole)
            except Exception as exc:
                # Nothing of the batch is stored. One ingest alone: that is its answer.
                outcomes = [exc]
                if len(batch) > 1:
                    try:
                        outcomes = await self._tx(each)
                    except Exception as again:
                        outcomes = [again] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _ingest(self, conn: sqlite3.Connection, req: IngestRequest) -> IngestOutcome:
        msg, now = req.message, req.now
        # A redelivered message, or a redelivered edit (which points at what it edited).
        row = conn.execute(
            "SELECT id, conversation_id FROM messages WHERE channel=? AND external_id=?"
            " UNION ALL SELECT m.id, m.conversation_id FROM edits e JOIN messages m"
            " ON m.id = e.message_id WHERE e.channel=? AND e.external_id=? LIMIT 1",
            (req.channel, msg.external_id, req.channel, msg.external_id),
        ).fetchone()
        if row is not None:
            return IngestOutcome(
                self._get_conv(conn, row[1]), self._get_msg(conn, row[0]), None, [], duplicate=True
            )

        if msg.edits is not None:
            edited = conn.execute(
                "SELECT id FROM messages WHERE channel=? AND external_id=?",
                (req.channel, msg.edits),
            ).fetchone()
            if edited is not None:
                conn.execute(
                    "UPDATE messages SET text=?, html=?, updated_at=? WHERE id=?",
                    (msg.text, msg.html, now, edited[0]),
                )
                # Record the edit's own external id so a redelivery stays a duplicate.
                conn.execute(
                    "INSERT INTO edits(channel, external_id, message_id, at) VALUES (?,?,?,?)",
                    (req.channel, msg.external_id, edited[0], now),
                )
                updated = self._get_msg(conn, edited[0])
                events = self._events(
                    conn,
                    now,
                    [
                        NewEvent(
                            "message.edited",
                            {
                                "conversation_id": updated.conversation_id,
                                "message": updated.to_api(),
                            },
                        )
                    ],
                )
                return IngestOutcome(
                    self._get_conv(conn, updated.conversation_id), updated, None, events
                )

        # Contact: the sender's identity only. Extra identities are what the customer typed
        # (a chat's pre-chat email): a claim, kept on the sender's own contact for agents to
        # see, never a way into another contact, its conversations or its replies, until the
        # customer proves it (`link_verified`).
        identity = msg.sender
        new_events: list[NewEvent] = []
        contact_id = self._contact_of(conn, identity)
        if contact_id is None:
            contact_id = new_id("ct")
            conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at) VALUES (?,?,?,?,?)",
                (contact_id, msg.sender_name, dumps(msg.contact_attributes), now, now),
            )
            attributes = dict(msg.contact_attributes)
            new_events.append(NewEvent("contact.created", {"contact_id": contact_id}))
            conn.execute(
                "INSERT INTO identities(kind, address, contact_id, verified) VALUES (?,?,?,1)",
                (identity.kind, identity.address, contact_id),
            )
        else:
            crow = conn.execute(
                "SELECT name, attributes FROM contacts WHERE id=?", (contact_id,)
            ).fetchone()
            attributes = loads(crow[1])
            if msg.contact_attributes or (msg.sender_name and not crow[0]):
                attributes.update(msg.contact_attributes)
                conn.execute(
                    "UPDATE contacts SET name=COALESCE(name, ?), attributes=?, updated_at=? WHERE id=?",
                    (msg.sender_name, dumps(attributes), now, contact_id),
                )
        for extra in msg.extra_identities:
            if extra == identity or self._contact_of(conn, extra) == contact_id:
                continue  # already this contact's own, proven identity
            cur = conn.execute(
                "INSERT OR IGNORE INTO claims(contact_id, kind, address, channel, created_at)"
                " VALUES (?,?,?,?,?)",
                (contact_id, extra.kind, extra.address, req.channel, now),
            )
            if cur.rowcount:
                new_events.append(
                    NewEvent(
                        "contact.claimed",
                        {
                            "contact_id": contact_id,
                            "claim": {"kind": extra.kind, "address": extra.address},
                            "verified": False,
                        },
                    )
                )

        # Conversation: thread keys first (same contact only), then the open one, then reopen.
        conv: Conversation | None = None
        if msg.thread_refs:
            marks = ",".join("?" * len(msg.thread_refs))
            hit = conn.execute(
                f"SELECT m.conversation_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                f" WHERE m.provider_message_id IN ({marks}) AND c.contact_id=? AND c.status != 'closed'"
                f" ORDER BY m.created_at DESC LIMIT 1",
                (*msg.thread_refs, contact_id),
            ).fetchone()
            if hit is not None:
                conv = self._get_conv(conn, hit[0])
        if conv is None and msg.thread_token:
            hit = conn.execute(
                "SELECT id FROM conversations WHERE thread_token=? AND contact_id=? AND status != 'closed'",
                (msg.thread_token, contact_id),
            ).fetchone()
            if hit is not None:
                conv = self._get_conv(conn, hit[0])
        if (
            conv is not None
            and conv.status == "resolved"
            and (conv.resolved_at or 0) < now - req.reopen_window
        ):
            conv = None  # too old to reopen: look for the active one instead
        if conv is None:
            # The contact's active conversation, else one resolved within the reopen window.
            hit = conn.execute(
                f"SELECT {self._CONV_COLS} FROM conversations WHERE contact_id=?"
                " AND (status IN ('open','assigned','pending') OR (status='resolved' AND resolved_at >= ?))"
                " ORDER BY status = 'resolved', updated_at DESC LIMIT 1",
                (contact_id, now - req.reopen_window),
            ).fetchone()
            if hit is not None:
                conv = self._conv(hit)

        created = reopened = False
        before = (None, "open") if conv is None else (conv.assignee, conv.status)
        if conv is None:
            cls = req.classify(attributes)
            conv = Conversation(
                id=new_id("cv"),
                contact_id=contact_id,
                channel=req.channel,
                channel_kind=req.channel_kind,
                last_channel=req.channel,
                status="open",
                queue=cls.queue,
                priority=cls.priority,
                created_at=now,
                updated_at=now,
                required_skills=cls.required_skills,
                tags=cls.tags,
                subject=msg.subject,
                thread_token=new_id("t").split("_", 1)[1][-12:],
                routing={"rule": cls.rule, "reasons": cls.reasons},
                reply_kind=identity.kind,
                reply_address=identity.address,
                last_inbound_at=now,
            )
            conn.execute(
                f"INSERT INTO conversations({self._CONV_COLS}) VALUES ({','.join('?' * 22)})",
                (
                    conv.id,
                    conv.contact_id,
                    conv.channel,
                    conv.channel_kind,
                    conv.last_channel,
                    conv.status,
                    conv.queue,
                    conv.priority,
                    conv.created_at,
                    conv.updated_at,
                    None,
                    dumps(conv.required_skills),
                    dumps(conv.tags),
                    conv.subject,
                    conv.thread_token,
                    conv.reply_kind,
                    conv.reply_address,
                    dumps(conv.routing),
                    None,
                    None,
                    None,
                    conv.last_inbound_at,
                ),
            )
            created = True
        elif conv.status == "resolved":
            reopened = True
            conv.status, conv.assignee, conv.resolved_at = "open", None, None
        elif conv.status == "pending":
            conv.status = "assigned" if conv.assignee else "open"

        if not created:
            self._update_for_inbound(conn, req.channel, conv, before, identity, now)
        put_blobs(conn, req.blobs)
        message = Message(
            id=new_id("msg"),
            conversation_id=conv.id,
            direction="in",
            channel=req.channel,
            sender_type="contact",
            sender_id=contact_id,
            text=msg.text,
            created_at=now,
            updated_at=now,
            html=msg.html,
            subject=msg.subject,
            attachments=req.attachments,
            external_id=msg.external_id,
            provider_message_id=msg.provider_message_id,
            automated=msg.automated,
            metadata=msg.metadata,
            raw_blob=req.raw_blob,
        )
        self._insert_message(conn, message)
        if created:
            new_events.append(NewEvent("conversation.created", {"conversation": conv.to_api()}))
        if reopened:
            new_events.append(
                NewEvent("conversation.reopened", {"conversation": conv.to_api(), "by": "customer"})
            )
        new_events.append(
            NewEvent(
                "message.received",
                # Ids only: the message is in `messages`; `events_since` puts it back.
                {"conversation_id": conv.id, "contact_id": contact_id, "message_id": message.id},
            )
        )
        events = self._events(conn, now, new_events)
        return IngestOutcome(conv, message, contact_id, events, created=created, reopened=reopened)

    def _update_for_inbound(
        self,
        conn: sqlite3.Connection,
        channel: str,
        conv: Conversation,
        before: tuple[str | None, str],
        identity: Identity,
        now: float,
    ) -> None:
        """An existing conversation takes a new inbound message."""
        self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
        conv.last_channel = channel
        conv.reply_kind, conv.reply_address = identity.kind, identity.address
        conv.updated_at = conv.last_inbound_at = now
        conn.execute(
            "UPDATE conversations SET status=?, assignee=?, resolved_at=?, last_channel=?, reply_kind=?,"
            " reply_address=?, updated_at=?, last_inbound_at=? WHERE id=?",
            (
                conv.status,
                conv.assignee,
                conv.resolved_at,
                conv.last_channel,
                conv.reply_kind,
                conv.reply_address,
                now,
                now,
                conv.id,
            ),
        )

    # --- outbound --------------------------------------------------------------------------
    async def add_outbound(self, request: OutboundRequest) -> tuple[Message, list[Event]]:
        return await self._tx(lambda conn: self._add_outbound(conn, request))

    def _add_outbound(
        self, conn: sqlite3.Connection, req: OutboundRequest
    ) -> tuple[Message, list[Event]]:
        conv = self._get_conv(conn, req.conversation_id)
        check_acts(req.scope, conv)
        if conv.status == "closed":
            raise Conflict("the conversation is closed")
        if conv.reply_kind is None:
            raise Conflict("the conversation has no customer address to reply to")
        now = req.now
        message = Message(
            id=new_id("msg"),
            conversation_id=conv.id,
            direction="out",
            channel=req.channel or conv.last_channel,
            sender_type=req.sender_type,  # type: ignore[arg-type]
            sender_id=req.sender_id,
            text=req.text,
            created_at=now,
            updated_at=now,
            html=req.html,
            subject=req.subject,
            status="queued",
            automated=req.automatic,
            metadata=dict(req.metadata),
        )
        self._insert_message(conn, message)
        to_kind, to_address = (
            (req.to.kind, req.to.address) if req.to else (conv.reply_kind, conv.reply_address)
        )
        conn.execute(
            "INSERT INTO outbox(message_id, channel, attempts, next_attempt_at, to_kind, to_address)"
            " VALUES (?,?,0,?,?,?)",
            (message.id, message.channel, now, to_kind, to_address),
        )
        status = conv.status
        first = conv.first_response_at
        if req.sender_type == "agent":
            if first is None:
                first = now
            if status == "assigned":
                status = "pending"
        conn.execute(
            "UPDATE conversations SET status=?, first_response_at=?, updated_at=? WHERE id=?",
            (status, first, now, conv.id),
        )
        self._adjust_load(
            conn, conv.channel_kind, (conv.assignee, conv.status), (conv.assignee, status)
        )
        events = self._events(
            conn,
            now,
            [NewEvent("message.queued", {"conversation_id": conv.id, "message_id": message.id})],
        )
        return message, events

    async def automatic_count(self, contact_id: str, since: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.contact_id=? AND m.direction='out' AND m.automated=1 AND m.created_at >= ?",
                    (contact_id, since),
                ).fetchone()[0]
            )

        return await self._run(op)

    # --- lifecycle -------------------------------------------------------------------------
    def _change(
        self,
        conversation_id: str,
        mutate: Callable[[sqlite3.Connection, Conversation], NewEvent],
        now: float,
        scope: Scope | None = None,
    ) -> Callable[[sqlite3.Connection], tuple[Conversation, list[Event]]]:
        def op(conn: sqlite3.Connection) -> tuple[Conversation, list[Event]]:
            conv = self._get_conv(conn, conversation_id)
            check_acts(scope, conv)
            before = (conv.assignee, conv.status)
            event = mutate(conn, conv)
            self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
            conv.updated_at = now
            conn.execute(
                "UPDATE conversations SET status=?, assignee=?, queue=?, assigned_at=?, resolved_at=?, updated_at=?"
                " WHERE id=?",
                (
                    conv.status,
                    conv.assignee,
                    conv.queue,
                    conv.assigned_at,
                    conv.resolved_at,
                    now,
                    conv.id,
                ),
            )
            event.data.setdefault("conversation", conv.to_api())
            return conv, self._events(conn, now, [event])

        return op

    async def assign(
        self,
        conversation_id: str,
        agent_id: str,
        capacity: int | None,
        by: str | None,
        now: float,
        scope: Scope | None = None,
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}; reopen it first")
            row = conn.execute(
                "SELECT presence, capacity FROM agents WHERE id=?", (agent_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"agent {agent_id} not found")
            if capacity is not None and conv.assignee != agent_id:
                # The caller read `capacity` earlier; an admin may have lowered it since.
                stored = AgentState(agent_id, row[0], loads(row[1]))
                limit = min(capacity, stored.capacity_for(conv.channel_kind))
                if self._load(conn, agent_id, conv.channel_kind) >= limit:
                    raise Conflict(
                        f"agent {agent_id} is at capacity ({limit}) for {conv.channel_kind}"
                    )
            conv.assignee, conv.assigned_at = agent_id, now
            if conv.status == "open":
                conv.status = "assigned"
            conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, agent_id))
            return NewEvent(
                "conversation.assigned",
                {
                    "conversation_id": conv.id,
                    "agent": agent_id,
                    "queue": conv.queue,
                    "strategy": "manual",
                    "reasons": [f"assigned manually by {by or 'unknown'}"],
                    "by": by,
                },
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}; reopen it first")
            previous = conv.queue
            conv.queue, conv.assignee, conv.status, conv.assigned_at = queue, None, "open", None
            return NewEvent(
                "conversation.transferred",
                {"conversation_id": conv.id, "from_queue": previous, "queue": queue, "by": by},
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is already {conv.status}")
            conv.status, conv.resolved_at = "resolved", now
            return NewEvent("conversation.resolved", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def reopen(
        self, conversation_id: str, by: str | None, now: float, scope: Scope | None = None
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status not in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}, not resolved")
            conv.status, conv.assignee, conv.resolved_at, conv.assigned_at = (
                "open",
                None,
                None,
                None,
            )
            return NewEvent("conversation.reopened", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    # --- queries ---------------------------------------------------------------------------
    async def get_conversation(
        self, conversation_id: str, scope: Scope | None = None
    ) -> Conversation:
        def op(conn: sqlite3.Connection) -> Conversation:
            conv = self._get_conv(conn, conversation_id)
            check_sees(scope, conv)
            return conv

        return await self._run(op)

    async def list_conversations(
        self, flt: ConversationFilter
    ) -> tuple[list[Conversation], str | None]:
        sql, args = self.list_query(flt)

        def op(conn: sqlite3.Connection) -> tuple[list[Conversation], str | None]:
            rows = [self._conv(r) for r in conn.execute(sql, args).fetchall()]
            more = len(rows) > flt.limit
            rows = rows[: flt.limit]
            return rows, (rows[-1].id if more and rows else None)

        return await self._run(op)

    @classmethod
    def list_query(cls, flt: ConversationFilter) -> tuple[str, list[str | int]]:
        """The SQL of a page of `list_conversations`, with its arguments: newest first by
        id, the next page from a cursor (`id < cursor`). Each filter has an index on
        (column, id) (migration 10): a page is a range read, in order."""
        where: list[str] = []
        args: list[str | int] = []
        for col, value in (
            ("status", flt.status),
            ("queue", flt.queue),
            ("assignee", flt.assignee),
            ("last_channel", flt.channel),
            ("contact_id", flt.contact_id),
        ):
            if value is not None:
                where.append(f"{col}=?")
                args.append(value)
        if flt.cursor:
            where.append("id < ?")
            args.append(flt.cursor)
        if flt.scope is not None:
            clause, scope_args = flt.scope.where()
            if clause:
                where.append(clause)
                args.extend(scope_args)
        sql = f"SELECT {cls._CONV_COLS} FROM conversations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(flt.limit + 1)
        return sql, args

    async def messages(self, conversation_id: str, scope: Scope | None = None) -> list[Message]:
        def op(conn: sqlite3.Connection) -> list[Message]:
            check_sees(scope, self._get_conv(conn, conversation_id))
            return [
                self._msg(r)
                for r in conn.execute(
                    f"SELECT {self._MSG_COLS} FROM messages WHERE conversation_id=? ORDER BY created_at, id",
                    (conversation_id,),
                )
            ]

        return await self._run(op)
