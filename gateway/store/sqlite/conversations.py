"""Conversations and messages of the SQLite store: ingest (with group commit), replies,
the lifecycle of a conversation and the queries behind the API."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from connectors.base import Identity, InboundMessage
from gateway.domain import identity as rules_identity
from gateway.domain import lifecycle, load, threading
from gateway.domain.lifecycle import TransitionRefused
from gateway.domain.threading import Candidate
from gateway.ids import new_id
from gateway.model import Conversation, Event, Message, NewEvent, dumps, loads
from gateway.outreach import policy as outreach_policy
from gateway.outreach.store import (
    OutreachStore,
    StartOutcome,
    StartRequest,
    check_sees_new,
    exists,
    new_conversation,
    refuse_missing,
    refuse_never_wrote,
    refuse_opted_out,
    refuse_unknown_agent,
    refuse_unknown_contact,
    start_events,
)
from gateway.store.base import (
    BotHandoff,
    Conflict,
    ConversationFilter,
    IngestOutcome,
    IngestRequest,
    NotFound,
    OutboundRequest,
    Preclassified,
    Scope,
    check_acts,
    check_sees,
)
from gateway.store.sqlite.blobs import put_blobs
from gateway.store.sqlite.rows import SqliteRows
from router.reasons import Reason, localize

# An ingest waiting for the next group commit: the request, its classification made
# before the transaction, and the caller's future.
_Pending = tuple[IngestRequest, Preclassified, "asyncio.Future[IngestOutcome]"]


def state_of(conv: Conversation) -> lifecycle.State:
    return lifecycle.State(
        conv.status, conv.assignee, conv.assigned_at, conv.resolved_at, conv.first_response_at
    )


def apply_state(conv: Conversation, state: lifecycle.State) -> None:
    conv.status, conv.assignee, conv.assigned_at = state.status, state.assignee, state.assigned_at
    conv.resolved_at, conv.first_response_at = state.resolved_at, state.first_response_at


class SqliteConversations(SqliteRows, OutreachStore):
    # --- ingest ----------------------------------------------------------------------------
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        """Group commit: ingests that arrive while a transaction is in flight share the next
        one. A caller's answer comes after the COMMIT that holds its message, so durability
        is unchanged; the commit cost is shared. A batch first runs without savepoints (no
        journal to keep); if one of its ingests fails, the transaction rolls back and the
        batch runs again with each ingest in its own savepoint, so only that one fails."""
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        # The router's rules run here, on the loop, not under the store's write lock.
        self._pending.append((request, Preclassified.before(request), future))
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
                conn: sqlite3.Connection, batch: list[_Pending] = batch
            ) -> list[IngestOutcome | Exception]:
                return [self._ingest(conn, request, pre) for request, pre, _ in batch]

            def each(
                conn: sqlite3.Connection, batch: list[_Pending] = batch
            ) -> list[IngestOutcome | Exception]:
                results: list[IngestOutcome | Exception] = []
                for request, pre, _ in batch:
                    conn.execute("SAVEPOINT ingest")
                    try:
                        results.append(self._ingest(conn, request, pre))
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
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _ingest(
        self, conn: sqlite3.Connection, req: IngestRequest, classification: Preclassified
    ) -> IngestOutcome:
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
        # customer proves it (`link_verified`). The rules: gateway/domain/identity.py.
        identity = msg.sender
        new_events: list[NewEvent] = []
        contact_id = self._contact_of(conn, identity)
        new_contact = contact_id is None
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
            update = rules_identity.update_contact(
                crow[0], loads(crow[1]), msg.sender_name, msg.contact_attributes
            )
            attributes = update.attributes
            if update.changed:
                conn.execute(
                    "UPDATE contacts SET name=COALESCE(name, ?), attributes=?, updated_at=? WHERE id=?",
                    (msg.sender_name, dumps(attributes), now, contact_id),
                )
        for extra in rules_identity.claims(
            identity, msg.extra_identities, contact_id, lambda i: self._contact_of(conn, i)
        ):
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

        # Conversation: the store finds the candidates, gateway/domain/threading.py decides.
        # (A contact created just now has no conversation yet: nothing to read.)
        placement = (
            threading.CREATE
            if new_contact
            else threading.place(
                self._thread_hit(conn, msg, contact_id),
                self._contact_candidates(conn, contact_id, now, req.reopen_window),
                now,
                req.reopen_window,
            )
        )
        created = reopened = False
        conv: Conversation
        if placement.conversation_id is None:
            cls = classification.decide(attributes)
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
                routing={
                    "rule": cls.rule,
                    "rules": cls.rules,
                    "reasons": cls.reasons,
                    "reasons_localized": localize(cls.reasons),
                },
                reply_kind=identity.kind,
                reply_address=identity.address,
                last_inbound_at=now,
            )
            self._insert_conversation(conn, conv)
            created = True
        else:
            conv = self._get_conv(conn, placement.conversation_id)
            before = (conv.assignee, conv.status)
            after, reopened = lifecycle.inbound(state_of(conv))
            conv.status, conv.assignee, conv.resolved_at = (
                after.status,
                after.assignee,
                after.resolved_at,
            )
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

    def _thread_hit(
        self, conn: sqlite3.Connection, msg: InboundMessage, contact_id: str
    ) -> Candidate | None:
        """The sender's own conversation the message's thread keys point at: a quoted
        Message-ID first, else the thread token (never another contact's, never closed)."""
        hit = None
        if msg.thread_refs:
            marks = ",".join("?" * len(msg.thread_refs))
            hit = conn.execute(
                "SELECT c.id, c.status, c.updated_at, c.resolved_at FROM messages m"
                " JOIN conversations c ON c.id = m.conversation_id"
                f" WHERE m.provider_message_id IN ({marks}) AND c.contact_id=? AND c.status != 'closed'"
                " ORDER BY m.created_at DESC LIMIT 1",
                (*msg.thread_refs, contact_id),
            ).fetchone()
        if hit is None and msg.thread_token:
            hit = conn.execute(
                "SELECT id, status, updated_at, resolved_at FROM conversations"
                " WHERE thread_token=? AND contact_id=? AND status != 'closed'",
                (msg.thread_token, contact_id),
            ).fetchone()
        return None if hit is None else Candidate(hit[0], hit[1], hit[2], hit[3])

    @staticmethod
    def _contact_candidates(
        conn: sqlite3.Connection, contact_id: str, now: float, reopen_window: float
    ) -> list[Candidate]:
        """The contact's conversations that can take a message: the active ones and those
        resolved within the reopen window (the others cannot win, `threading.place`)."""
        return [
            Candidate(r[0], r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT id, status, updated_at, resolved_at FROM conversations WHERE contact_id=?"
                " AND (status IN ('open','assigned','pending')"
                " OR (status='resolved' AND resolved_at >= ?))",
                (contact_id, now - reopen_window),
            )
        ]

    def _insert_conversation(self, conn: sqlite3.Connection, conv: Conversation) -> None:
        conn.execute(
            # Opened for its contact: one active per contact (migration 11).
            f"INSERT INTO conversations({self._CONV_COLS}, opened_for)"
            f" VALUES ({','.join('?' * 23)})",
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
                conv.contact_id,
            ),
        )

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
            attachments=list(req.attachments),
        )
        put_blobs(conn, req.blobs)  # files an agent attached (issue 14)
        self._insert_message(conn, message)
        to_kind, to_address = (
            (req.to.kind, req.to.address) if req.to else (conv.reply_kind, conv.reply_address)
        )
        conn.execute(
            "INSERT INTO outbox(message_id, channel, attempts, next_attempt_at, to_kind, to_address)"
            " VALUES (?,?,0,?,?,?)",
            (message.id, message.channel, now, to_kind, to_address),
        )
        after = lifecycle.reply(state_of(conv), req.sender_type, now)
        conn.execute(
            "UPDATE conversations SET status=?, first_response_at=?, updated_at=? WHERE id=?",
            (after.status, after.first_response_at, now, conv.id),
        )
        self._adjust_load(
            conn, conv.channel_kind, (conv.assignee, conv.status), (after.assignee, after.status)
        )
        events = self._events(
            conn,
            now,
            [NewEvent("message.queued", {"conversation_id": conv.id, "message_id": message.id})],
        )
        return message, events

    # --- proactive outreach (issue 15: gateway/outreach/) -----------------------------------
    async def start_conversation(self, request: StartRequest) -> StartOutcome:
        return await self._tx(lambda conn: self._start(conn, request))

    def _start(self, conn: sqlite3.Connection, req: StartRequest) -> StartOutcome:
        now = req.now
        new_contact = False
        if req.contact_id is not None:
            if (
                conn.execute("SELECT 1 FROM contacts WHERE id=?", (req.contact_id,)).fetchone()
                is None
            ):
                raise refuse_unknown_contact(req)
            contact_id = self._resolve_contact_id(conn, req.contact_id)
            try:  # a contact the caller cannot see is as unknown as to GET /v1/contacts/{id}
                self._check_contact(conn, contact_id, req.scope)
            except NotFound:
                raise refuse_unknown_contact(req) from None
            row = conn.execute(
                "SELECT kind, address FROM identities WHERE contact_id=? AND kind=?"
                " ORDER BY verified DESC, address LIMIT 1",
                (contact_id, req.identity_kind),
            ).fetchone()
            if row is None:
                raise refuse_missing(req)
            to = Identity(row[0], row[1])
        else:
            assert req.to is not None
            to = req.to
            found = self._contact_of(conn, to)
            if found is None:
                if req.needs_inbound:
                    raise refuse_never_wrote(req)
                contact_id = new_id("ct")
                conn.execute(
                    "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                    " VALUES (?,?,?,?,?)",
                    (contact_id, req.name, "{}", now, now),
                )
                conn.execute(
                    "INSERT INTO identities(kind, address, contact_id, verified) VALUES (?,?,?,1)",
                    (to.kind, to.address, contact_id),
                )
                new_contact = True
            else:
                contact_id = found
        attributes: dict[str, str] = {}
        if not new_contact:
            attributes = loads(
                conn.execute(
                    "SELECT attributes FROM contacts WHERE id=?", (contact_id,)
                ).fetchone()[0]
            )
            if outreach_policy.opted_out(attributes):
                raise refuse_opted_out()
            if req.needs_inbound and (
                conn.execute(
                    "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.contact_id=? AND m.channel=? AND m.direction='in' LIMIT 1",
                    (contact_id, req.channel),
                ).fetchone()
                is None
            ):
                raise refuse_never_wrote(req)
            active = conn.execute(
                "SELECT id FROM conversations WHERE contact_id=?"
                " AND status IN ('open','assigned','pending') ORDER BY updated_at DESC LIMIT 1",
                (contact_id,),
            ).fetchone()
            if active is not None:
                raise exists(req, self._get_conv(conn, active[0]))
        conv = new_conversation(req, contact_id, to, attributes)
        check_sees_new(req, conv)
        self._insert_conversation(conn, replace(conv, status="open", assignee=None))
        # Inserted waiting, then assigned: as an assignment changes any conversation.
        if conv.assignee is not None:
            if conn.execute("SELECT 1 FROM agents WHERE id=?", (conv.assignee,)).fetchone() is None:
                raise refuse_unknown_agent(conv.assignee)
            conn.execute(
                "UPDATE conversations SET status=?, assignee=?, assigned_at=? WHERE id=?",
                (conv.status, conv.assignee, conv.assigned_at, conv.id),
            )
            conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, conv.assignee))
            self._adjust_load(conn, conv.channel_kind, (None, "open"), (conv.assignee, "assigned"))
        events = self._events(conn, now, start_events(conv, req, new_contact))
        message, queued = self._add_outbound(
            conn,
            OutboundRequest(
                conversation_id=conv.id,
                text=req.text,
                sender_type="agent",
                sender_id=req.sender_id,
                now=now,
                subject=req.subject,
                metadata=dict(req.metadata),
            ),
        )
        conv = self._get_conv(conn, conv.id)
        return StartOutcome(conv, message, contact_id, events + queued)

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
            try:
                event = mutate(conn, conv)
            except TransitionRefused as refused:
                raise Conflict(str(refused)) from None
            self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
            conv.updated_at = now
            try:
                conn.execute(
                    # A new assignee is a manual one (`claimed` is the router's: migration 11).
                    "UPDATE conversations SET claimed = CASE WHEN assignee IS ? THEN claimed ELSE 0 END,"
                    " status=?, assignee=?, queue=?, assigned_at=?, resolved_at=?, tags=?,"
                    " priority=?, updated_at=? WHERE id=?",
                    (
                        conv.assignee,
                        conv.status,
                        conv.assignee,
                        conv.queue,
                        conv.assigned_at,
                        conv.resolved_at,
                        dumps(conv.tags),
                        conv.priority,
                        now,
                        conv.id,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "conversations.contact_id" not in str(exc):
                    raise
                # conversations_one_active: reopening it would make a second one.
                raise Conflict(
                    "the contact has another active conversation; it takes the messages"
                ) from None
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
            after = lifecycle.assign(state_of(conv), agent_id, now)
            row = conn.execute(
                "SELECT presence, capacity FROM agents WHERE id=?", (agent_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"agent {agent_id} not found")
            if conv.assignee != agent_id:
                # The caller read `capacity` earlier; an admin may have lowered it since.
                limit = load.assignment_limit(
                    capacity, load.capacity_for(loads(row[1]), conv.channel_kind)
                )
                if limit is not None and not load.has_room(
                    self._load(conn, agent_id, conv.channel_kind), limit
                ):
                    raise Conflict(
                        f"agent {agent_id} is at capacity ({limit}) for {conv.channel_kind}"
                    )
            apply_state(conv, after)
            conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, agent_id))
            manual = Reason("core.manual", by=by or "unknown")
            return NewEvent(
                "conversation.assigned",
                {
                    "conversation_id": conv.id,
                    "agent": agent_id,
                    "queue": conv.queue,
                    "strategy": "manual",
                    "reasons": [manual],
                    "reasons_localized": localize([manual]),
                    "by": by,
                },
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.transfer(state_of(conv)))
            previous, conv.queue = conv.queue, queue
            return NewEvent(
                "conversation.transferred",
                {"conversation_id": conv.id, "from_queue": previous, "queue": queue, "by": by},
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.resolve(state_of(conv), now))
            return NewEvent("conversation.resolved", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def reopen(
        self, conversation_id: str, by: str | None, now: float, scope: Scope | None = None
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.reopen(state_of(conv)))
            return NewEvent("conversation.reopened", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    # --- the bot stage (issue 15) ----------------------------------------------------------
    async def bot_handoff(
        self, handoff: BotHandoff, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.assignee is not None or conv.queue != handoff.held_in:
                raise TransitionRefused("the conversation is no longer with the bot")
            apply_state(conv, lifecycle.transfer(state_of(conv)))
            previous, conv.queue = conv.queue, handoff.queue
            conv.priority, conv.required_skills = handoff.priority, dict(handoff.required_skills)
            conv.tags, conv.routing = list(handoff.tags), dict(handoff.routing)
            conn.execute(
                "UPDATE conversations SET priority=?, required_skills=?, tags=?, routing=?"
                " WHERE id=?",
                (
                    conv.priority,
                    dumps(conv.required_skills),
                    dumps(conv.tags),
                    dumps(conv.routing),
                    conv.id,
                ),
            )
            return NewEvent(
                "conversation.transferred",
                {
                    "conversation_id": conv.id,
                    "from_queue": previous,
                    "queue": handoff.queue,
                    "by": f"bot:{handoff.bot}",
                    "handoff": handoff.handoff,
                },
            )

        change = self._change(handoff.conversation_id, mutate, now)

        def op(conn: sqlite3.Connection) -> tuple[Conversation, list[Event]]:
            conv, events = change(conn)
            data = {"conversation_id": conv.id, "bot": handoff.bot, "queue": conv.queue}
            return conv, events + self._events(
                conn, now, [NewEvent("bot.handoff", data | handoff.handoff)]
            )

        return await self._tx(op)

    async def bot_record(self, event_type: str, data: dict[str, Any], now: float) -> list[Event]:
        if not event_type.startswith("bot."):
            raise ValueError(f"not a bot event: {event_type!r}")

        def op(conn: sqlite3.Connection) -> list[Event]:
            return self._events(conn, now, [NewEvent(event_type, data)])

        result: list[Event] = await self._tx(op)
        return result

    async def bot_turn_claim(self, conversation_id: str, holder: str, ttl: float) -> bool:
        """One file is one host: the host's wall clock times the claim."""

        def op(conn: sqlite3.Connection) -> bool:
            now = time.time()
            taken = conn.execute(
                "INSERT INTO bot_turns(conversation_id, holder, until) VALUES (?,?,?)"
                " ON CONFLICT(conversation_id) DO UPDATE SET holder=excluded.holder,"
                " until=excluded.until"
                " WHERE bot_turns.holder = excluded.holder OR bot_turns.until <= ?"
                " RETURNING 1",
                (conversation_id, holder, now + ttl, now),
            ).fetchone()
            return taken is not None

        claimed: bool = await self._tx(op)
        return claimed

    async def bot_turn_release(self, conversation_id: str, holder: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "DELETE FROM bot_turns WHERE conversation_id=? AND holder=?",
                (conversation_id, holder),
            )
        )

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
