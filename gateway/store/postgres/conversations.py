"""Conversations and messages on PostgreSQL: ingest, replies, the lifecycle, the queries.
The rules are gateway/domain/'s; this module gathers the facts, calls them, writes.

Concurrency: an ingest locks its contact's row and the candidate conversations before it
threads, so two instances taking messages of one customer take turns and the second finds
the conversation the first made; the partial unique index `conversations_one_active` is
the backstop (and a new contact or a duplicate external id made at the same moment
elsewhere): the ingest then runs again and finds what the other made. A change of a
conversation locks its row (`FOR UPDATE`) first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg

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
    Classification,
    Conflict,
    ConversationFilter,
    ConversationStore,
    IngestOutcome,
    IngestRequest,
    NotFound,
    OutboundRequest,
    Preclassified,
    Scope,
    check_acts,
    check_sees,
)
from gateway.store.postgres.contacts import PgContacts
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import (
    CONV_COLS,
    MSG_COLS,
    Conn,
    contact_of,
    conv_row,
    get_conv,
    get_msg,
    msg_row,
    resolve_contact_id,
    rowcount,
    scope_where,
)
from gateway.store.postgres.routing import adjust_load, load_of, lock_agent
from gateway.store.rows import message_values
from router.reasons import Reason, localize

_ACTIVE = "status IN ('open', 'assigned', 'pending')"


def state_of(conv: Conversation) -> lifecycle.State:
    return lifecycle.State(
        conv.status, conv.assignee, conv.assigned_at, conv.resolved_at, conv.first_response_at
    )


def apply_state(conv: Conversation, state: lifecycle.State) -> None:
    conv.status, conv.assignee, conv.assigned_at = state.status, state.assignee, state.assigned_at
    conv.resolved_at, conv.first_response_at = state.resolved_at, state.first_response_at


def _new_conversation(
    req: IngestRequest, contact_id: str, cls: Classification, now: float
) -> Conversation:
    msg, identity = req.message, req.message.sender
    return Conversation(
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


async def insert_message(conn: Conn, m: Message) -> None:
    await conn.execute(
        f"INSERT INTO messages({MSG_COLS}) VALUES"
        " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
        *message_values(m),
    )


class PgConversations(PgContacts, ConversationStore, OutreachStore):
    # --- ingest ----------------------------------------------------------------------------
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        # The router's rules run before the transaction (`Preclassified`). A unique
        # violation is another writer that made the same contact, conversation or message a
        # moment before: run again and find it.
        classification = Preclassified.before(request)
        return await self._tx(
            lambda conn: self._ingest(conn, request, classification),
            retry=(asyncpg.exceptions.UniqueViolationError,),
        )

    async def _ingest(
        self, conn: Conn, req: IngestRequest, classification: Preclassified
    ) -> IngestOutcome:
        msg, now = req.message, req.now
        # A redelivered message, or a redelivered edit (which points at what it edited).
        row = await conn.fetchrow(
            "SELECT id, conversation_id FROM messages WHERE channel=$1 AND external_id=$2"
            " UNION ALL SELECT m.id, m.conversation_id FROM edits e JOIN messages m"
            " ON m.id = e.message_id WHERE e.channel=$1 AND e.external_id=$2 LIMIT 1",
            req.channel,
            msg.external_id,
        )
        if row is not None:
            return IngestOutcome(
                await get_conv(conn, row[1]), await get_msg(conn, row[0]), None, [], duplicate=True
            )

        if msg.edits is not None:
            edited = await conn.fetchval(
                "SELECT id FROM messages WHERE channel=$1 AND external_id=$2",
                req.channel,
                msg.edits,
            )
            if edited is not None:
                await conn.execute(
                    "UPDATE messages SET text=$1, html=$2, updated_at=$3 WHERE id=$4",
                    msg.text,
                    msg.html,
                    now,
                    edited,
                )
                # Record the edit's own external id so a redelivery stays a duplicate.
                await conn.execute(
                    "INSERT INTO edits(channel, external_id, message_id, at) VALUES ($1,$2,$3,$4)",
                    req.channel,
                    msg.external_id,
                    edited,
                    now,
                )
                updated = await get_msg(conn, edited)
                home = await get_conv(conn, updated.conversation_id)
                events = await append_events(
                    conn,
                    now,
                    [
                        NewEvent(
                            "message.edited",
                            {"conversation_id": home.id, "message": updated.to_api()},
                        )
                    ],
                )
                return IngestOutcome(home, updated, None, events)

        # Contact: the sender's identity only; extra identities are claims until proven
        # (the rules: gateway/domain/identity.py).
        identity = msg.sender
        new_events: list[NewEvent] = []
        contact_id = await contact_of(conn, identity)
        new_contact = contact_id is None
        if contact_id is None:
            contact_id = new_id("ct")
            await conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $4)",
                contact_id,
                msg.sender_name,
                dumps(msg.contact_attributes),
                now,
            )
            attributes = dict(msg.contact_attributes)
            new_events.append(NewEvent("contact.created", {"contact_id": contact_id}))
            # Made by another instance meanwhile: a unique violation, and the ingest runs again.
            await conn.execute(
                "INSERT INTO identities(kind, address, contact_id, verified)"
                " VALUES ($1, $2, $3, TRUE)",
                identity.kind,
                identity.address,
                contact_id,
            )
        else:
            # The contact's row is held until the commit: its messages are threaded one at
            # a time, whichever instance takes them.
            crow = await conn.fetchrow(
                "SELECT name, attributes FROM contacts WHERE id=$1 FOR UPDATE", contact_id
            )
            if crow is None:
                raise NotFound(f"contact {contact_id} not found")
            update = rules_identity.update_contact(
                crow[0], loads(crow[1]), msg.sender_name, msg.contact_attributes
            )
            attributes = update.attributes
            if update.changed:
                await conn.execute(
                    "UPDATE contacts SET name=COALESCE(name, $1), attributes=$2, updated_at=$3"
                    " WHERE id=$4",
                    msg.sender_name,
                    dumps(attributes),
                    now,
                    contact_id,
                )
        owners = {extra: await contact_of(conn, extra) for extra in msg.extra_identities}
        for extra in rules_identity.claims(
            identity, msg.extra_identities, contact_id, lambda i: owners.get(i)
        ):
            status = await conn.execute(
                "INSERT INTO claims(contact_id, kind, address, channel, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                contact_id,
                extra.kind,
                extra.address,
                req.channel,
                now,
            )
            if rowcount(status):
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

        # Conversation: the store finds the candidates (locked: a lifecycle change of one
        # waits for this ingest), gateway/domain/threading.py decides.
        # (A contact created just now has no conversation yet: nothing to read.)
        candidates = (
            []
            if new_contact
            else await self._contact_candidates(conn, contact_id, now, req.reopen_window)
        )
        placement = (
            threading.CREATE
            if new_contact
            else threading.place(
                await self._thread_hit(conn, msg, contact_id),
                [Candidate(c.id, c.status, c.updated_at, c.resolved_at) for c in candidates],
                now,
                req.reopen_window,
            )
        )
        created = reopened = False
        conv: Conversation
        if placement.conversation_id is None:
            conv = _new_conversation(req, contact_id, classification.decide(attributes), now)
            await self._insert_conversation(conn, conv)
            created = True
        else:
            found = [c for c in candidates if c.id == placement.conversation_id]
            conv = found[0] if found else await get_conv(conn, placement.conversation_id)
            before = (conv.assignee, conv.status)
            after, reopened = lifecycle.inbound(state_of(conv))
            apply_state(conv, after)
            conv.last_channel = req.channel
            conv.reply_kind, conv.reply_address = identity.kind, identity.address
            conv.updated_at = conv.last_inbound_at = now
            await adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
            await conn.execute(
                "UPDATE conversations SET status=$1, assignee=$2, resolved_at=$3,"
                " last_channel=$4, reply_kind=$5, reply_address=$6, updated_at=$7,"
                " last_inbound_at=$7 WHERE id=$8",
                conv.status,
                conv.assignee,
                conv.resolved_at,
                conv.last_channel,
                conv.reply_kind,
                conv.reply_address,
                now,
                conv.id,
            )
        for blob_id, (content_type, data) in req.blobs.items():
            await conn.execute(
                "INSERT INTO blobs(id, content_type, size, data) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                blob_id,
                content_type,
                len(data),
                data,
            )
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
        await insert_message(conn, message)
        if created:
            new_events.append(NewEvent("conversation.created", {"conversation": conv.to_api()}))
        if reopened:
            new_events.append(
                NewEvent("conversation.reopened", {"conversation": conv.to_api(), "by": "customer"})
            )
        new_events.append(
            NewEvent(
                "message.received",
                {"conversation_id": conv.id, "contact_id": contact_id, "message_id": message.id},
            )
        )
        events = await append_events(conn, now, new_events)
        return IngestOutcome(conv, message, contact_id, events, created=created, reopened=reopened)

    @staticmethod
    async def _thread_hit(conn: Conn, msg: InboundMessage, contact_id: str) -> Candidate | None:
        """The sender's own conversation the message's thread keys point at: a quoted
        Message-ID first, else the thread token (never another contact's, never closed)."""
        hit = None
        if msg.thread_refs:
            hit = await conn.fetchrow(
                "SELECT c.id, c.status, c.updated_at, c.resolved_at FROM messages m"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.provider_message_id = ANY($1) AND c.contact_id=$2"
                " AND c.status != 'closed' ORDER BY m.created_at DESC LIMIT 1 FOR UPDATE OF c",
                list(msg.thread_refs),
                contact_id,
            )
        if hit is None and msg.thread_token:
            hit = await conn.fetchrow(
                "SELECT id, status, updated_at, resolved_at FROM conversations"
                " WHERE thread_token=$1 AND contact_id=$2 AND status != 'closed' FOR UPDATE",
                msg.thread_token,
                contact_id,
            )
        return None if hit is None else Candidate(hit[0], hit[1], hit[2], hit[3])

    @staticmethod
    async def _contact_candidates(
        conn: Conn, contact_id: str, now: float, reopen_window: float
    ) -> list[Conversation]:
        """The contact's conversations that can take a message, locked: the active ones and
        those resolved within the reopen window (the others cannot win, `threading.place`;
        the one it chooses is always among them)."""
        return [
            conv_row(r)
            for r in await conn.fetch(
                f"SELECT {CONV_COLS} FROM conversations WHERE contact_id=$1"
                f" AND ({_ACTIVE} OR (status='resolved' AND resolved_at >= $2))"
                " ORDER BY id FOR UPDATE",
                contact_id,
                now - reopen_window,
            )
        ]

    @staticmethod
    async def _insert_conversation(conn: Conn, conv: Conversation) -> None:
        await conn.execute(
            # Opened for its contact: one active per contact (conversations_one_active).
            f"INSERT INTO conversations({CONV_COLS}, opened_for) VALUES ($1,$2,$3,$4,$5,$6,$7,"
            "$8,$9,$10,NULL,$11,$12,$13,$14,$15,$16,$17,NULL,NULL,NULL,$18,$2)",
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
            dumps(conv.required_skills),
            dumps(conv.tags),
            conv.subject,
            conv.thread_token,
            conv.reply_kind,
            conv.reply_address,
            dumps(conv.routing),
            conv.last_inbound_at,
        )

    # --- outbound --------------------------------------------------------------------------
    async def add_outbound(self, request: OutboundRequest) -> tuple[Message, list[Event]]:
        return await self._tx(lambda conn: self._add_outbound(conn, request))

    async def _add_outbound(self, conn: Conn, req: OutboundRequest) -> tuple[Message, list[Event]]:
        conv = await get_conv(conn, req.conversation_id, lock=True)
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
        for blob_id, (content_type, data) in req.blobs.items():  # an agent's files (issue 14)
            await conn.execute(
                "INSERT INTO blobs(id, content_type, size, data) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                blob_id,
                content_type,
                len(data),
                data,
            )
        await insert_message(conn, message)
        to_kind, to_address = (
            (req.to.kind, req.to.address) if req.to else (conv.reply_kind, conv.reply_address)
        )
        await conn.execute(
            "INSERT INTO outbox(message_id, channel, attempts, next_attempt_at, to_kind,"
            " to_address) VALUES ($1, $2, 0, $3, $4, $5)",
            message.id,
            message.channel,
            now,
            to_kind,
            to_address,
        )
        after = lifecycle.reply(state_of(conv), req.sender_type, now)
        await conn.execute(
            "UPDATE conversations SET status=$1, first_response_at=$2, updated_at=$3 WHERE id=$4",
            after.status,
            after.first_response_at,
            now,
            conv.id,
        )
        await adjust_load(
            conn, conv.channel_kind, (conv.assignee, conv.status), (after.assignee, after.status)
        )
        events = await append_events(
            conn,
            now,
            [NewEvent("message.queued", {"conversation_id": conv.id, "message_id": message.id})],
        )
        return message, events

    # --- proactive outreach (issue 15: gateway/outreach/) -----------------------------------
    async def start_conversation(self, request: StartRequest) -> StartOutcome:
        # A unique violation: another writer made the contact (or opened its conversation)
        # a moment before; run again and find it.
        return await self._tx(
            lambda conn: self._start(conn, request),
            retry=(asyncpg.exceptions.UniqueViolationError,),
        )

    async def _start(self, conn: Conn, req: StartRequest) -> StartOutcome:
        now = req.now
        new_contact = False
        if req.contact_id is not None:
            if await conn.fetchval("SELECT 1 FROM contacts WHERE id=$1", req.contact_id) is None:
                raise refuse_unknown_contact(req)
            contact_id = await resolve_contact_id(conn, req.contact_id)
            try:  # a contact the caller cannot see is as unknown as to GET /v1/contacts/{id}
                await self._check_contact(conn, contact_id, req.scope)
            except NotFound:
                raise refuse_unknown_contact(req) from None
            row = await conn.fetchrow(
                "SELECT kind, address FROM identities WHERE contact_id=$1 AND kind=$2"
                " ORDER BY verified DESC, address LIMIT 1",
                contact_id,
                req.identity_kind,
            )
            if row is None:
                raise refuse_missing(req)
            to = Identity(row[0], row[1])
        else:
            assert req.to is not None
            to = req.to
            found = await contact_of(conn, to)
            if found is None:
                if req.needs_inbound:
                    raise refuse_never_wrote(req)
                contact_id = new_id("ct")
                await conn.execute(
                    "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                    " VALUES ($1, $2, '{}', $3, $3)",
                    contact_id,
                    req.name,
                    now,
                )
                await conn.execute(
                    "INSERT INTO identities(kind, address, contact_id, verified)"
                    " VALUES ($1, $2, $3, TRUE)",
                    to.kind,
                    to.address,
                    contact_id,
                )
                new_contact = True
            else:
                contact_id = found
        attributes: dict[str, str] = {}
        if not new_contact:
            # The contact's row is held until the commit, as an ingest holds it.
            raw = await conn.fetchval(
                "SELECT attributes FROM contacts WHERE id=$1 FOR UPDATE", contact_id
            )
            attributes = loads(raw) if raw else {}
            if outreach_policy.opted_out(attributes):
                raise refuse_opted_out()
            if req.needs_inbound and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM messages m JOIN conversations c"
                " ON c.id = m.conversation_id WHERE c.contact_id=$1 AND m.channel=$2"
                " AND m.direction='in')",
                contact_id,
                req.channel,
            ):
                raise refuse_never_wrote(req)
            active = await conn.fetchval(
                f"SELECT id FROM conversations WHERE contact_id=$1 AND {_ACTIVE}"
                " ORDER BY updated_at DESC LIMIT 1",
                contact_id,
            )
            if active is not None:
                raise exists(req, await get_conv(conn, active))
        conv = new_conversation(req, contact_id, to, attributes)
        check_sees_new(req, conv)
        await self._insert_conversation(conn, replace(conv, status="open", assignee=None))
        # Inserted waiting, then assigned: as an assignment changes any conversation.
        if conv.assignee is not None:
            if await lock_agent(conn, conv.assignee) is None:
                raise refuse_unknown_agent(conv.assignee)
            await conn.execute(
                "UPDATE conversations SET status=$4, assignee=$1, assigned_at=$2 WHERE id=$3",
                conv.assignee,
                conv.assigned_at,
                conv.id,
                conv.status,
            )
            await conn.execute(
                "UPDATE agents SET last_assigned_at=$1 WHERE id=$2", now, conv.assignee
            )
            await adjust_load(conn, conv.channel_kind, (None, "open"), (conv.assignee, "assigned"))
        events = await append_events(conn, now, start_events(conv, req, new_contact))
        message, queued = await self._add_outbound(
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
        conv = await get_conv(conn, conv.id)
        return StartOutcome(conv, message, contact_id, events + queued)

    async def automatic_count(self, contact_id: str, since: float) -> int:
        async def op(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT COUNT(*) FROM messages m JOIN conversations c"
                    " ON c.id = m.conversation_id WHERE c.contact_id=$1 AND m.direction='out'"
                    " AND m.automated AND m.created_at >= $2",
                    contact_id,
                    since,
                )
            )

        return await self._read(op)

    # --- lifecycle (the rules: gateway/domain/lifecycle.py and load.py) -------------------
    async def _change(
        self,
        conversation_id: str,
        mutate: Callable[[Conn, Conversation], Awaitable[NewEvent]],
        now: float,
        scope: Scope | None = None,
    ) -> tuple[Conversation, list[Event]]:
        return await self._tx(self._change_op(conversation_id, mutate, now, scope))

    def _change_op(
        self,
        conversation_id: str,
        mutate: Callable[[Conn, Conversation], Awaitable[NewEvent]],
        now: float,
        scope: Scope | None = None,
    ) -> Callable[[Conn], Awaitable[tuple[Conversation, list[Event]]]]:
        """The change of `_change` as a step of a transaction (to add writes to it)."""

        async def op(conn: Conn) -> tuple[Conversation, list[Event]]:
            conv = await get_conv(conn, conversation_id, lock=True)
            check_acts(scope, conv)
            before = (conv.assignee, conv.status)
            try:
                event = await mutate(conn, conv)
            except TransitionRefused as refused:
                raise Conflict(str(refused)) from None
            await adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
            conv.updated_at = now
            try:
                await conn.execute(
                    # A new assignee is a manual one (`claimed` is the router's).
                    "UPDATE conversations SET claimed = CASE WHEN assignee IS NOT DISTINCT"
                    " FROM $2 THEN claimed ELSE FALSE END, status=$1, assignee=$2, queue=$3,"
                    " assigned_at=$4, resolved_at=$5, tags=$6, priority=$7, updated_at=$8"
                    " WHERE id=$9",
                    conv.status,
                    conv.assignee,
                    conv.queue,
                    conv.assigned_at,
                    conv.resolved_at,
                    dumps(conv.tags),
                    conv.priority,
                    now,
                    conv.id,
                )
            except asyncpg.exceptions.UniqueViolationError:
                # conversations_one_active: reopening it would make a second one.
                raise Conflict(
                    "the contact has another active conversation; it takes the messages"
                ) from None
            event.data.setdefault("conversation", conv.to_api())
            return conv, await append_events(conn, now, [event])

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
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            after = lifecycle.assign(state_of(conv), agent_id, now)
            agent = await lock_agent(conn, agent_id)
            if agent is None:
                raise NotFound(f"agent {agent_id} not found")
            if conv.assignee != agent_id:
                # The caller read `capacity` earlier; an admin may have lowered it since.
                limit = load.assignment_limit(
                    capacity, load.capacity_for(agent.capacity, conv.channel_kind)
                )
                if limit is not None and not load.has_room(
                    await load_of(conn, agent_id, conv.channel_kind), limit
                ):
                    raise Conflict(
                        f"agent {agent_id} is at capacity ({limit}) for {conv.channel_kind}"
                    )
            apply_state(conv, after)
            await conn.execute("UPDATE agents SET last_assigned_at=$1 WHERE id=$2", now, agent_id)
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

        return await self._change(conversation_id, mutate, now, scope)

    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.transfer(state_of(conv)))
            previous, conv.queue = conv.queue, queue
            return NewEvent(
                "conversation.transferred",
                {"conversation_id": conv.id, "from_queue": previous, "queue": queue, "by": by},
            )

        return await self._change(conversation_id, mutate, now, scope)

    # --- the bot stage (issue 15) ----------------------------------------------------------
    async def bot_handoff(
        self, handoff: BotHandoff, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            if conv.assignee is not None or conv.queue != handoff.held_in:
                raise TransitionRefused("the conversation is no longer with the bot")
            apply_state(conv, lifecycle.transfer(state_of(conv)))
            previous, conv.queue = conv.queue, handoff.queue
            conv.priority, conv.required_skills = handoff.priority, dict(handoff.required_skills)
            conv.tags, conv.routing = list(handoff.tags), dict(handoff.routing)
            await conn.execute(
                "UPDATE conversations SET priority=$1, required_skills=$2, tags=$3, routing=$4"
                " WHERE id=$5",
                conv.priority,
                dumps(conv.required_skills),
                dumps(conv.tags),
                dumps(conv.routing),
                conv.id,
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

        change = self._change_op(handoff.conversation_id, mutate, now)

        async def op(conn: Conn) -> tuple[Conversation, list[Event]]:
            # The move and its record in one transaction: neither is kept without the other.
            conv, events = await change(conn)
            data = {"conversation_id": conv.id, "bot": handoff.bot, "queue": conv.queue}
            return conv, events + await append_events(
                conn, now, [NewEvent("bot.handoff", data | handoff.handoff)]
            )

        return await self._tx(op)

    async def bot_record(self, event_type: str, data: dict[str, Any], now: float) -> list[Event]:
        if not event_type.startswith("bot."):
            raise ValueError(f"not a bot event: {event_type!r}")

        async def op(conn: Conn) -> list[Event]:
            return await append_events(conn, now, [NewEvent(event_type, data)])

        return await self._tx(op)

    async def bot_turn_claim(self, conversation_id: str, holder: str, ttl: float) -> bool:
        """One statement: of two instances asking at once, one inserts (or takes the
        expired row) and the other waits for its commit and finds the row live."""

        async def op(conn: Conn) -> bool:
            taken = await conn.fetchval(
                "INSERT INTO bot_turns(conversation_id, holder, until)"
                " VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))"
                " ON CONFLICT(conversation_id) DO UPDATE SET holder=excluded.holder,"
                " until=excluded.until"
                " WHERE bot_turns.holder = excluded.holder OR bot_turns.until <= clock_timestamp()"
                " RETURNING TRUE",
                conversation_id,
                holder,
                ttl,
            )
            return bool(taken)

        return await self._tx(op)

    async def bot_turn_release(self, conversation_id: str, holder: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM bot_turns WHERE conversation_id=$1 AND holder=$2",
                conversation_id,
                holder,
            )

        await self._tx(op)

    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.resolve(state_of(conv), now))
            return NewEvent("conversation.resolved", {"conversation_id": conv.id, "by": by})

        return await self._change(conversation_id, mutate, now, scope)

    async def reopen(
        self, conversation_id: str, by: str | None, now: float, scope: Scope | None = None
    ) -> tuple[Conversation, list[Event]]:
        async def mutate(conn: Conn, conv: Conversation) -> NewEvent:
            apply_state(conv, lifecycle.reopen(state_of(conv)))
            return NewEvent("conversation.reopened", {"conversation_id": conv.id, "by": by})

        return await self._change(conversation_id, mutate, now, scope)

    # --- queries ---------------------------------------------------------------------------
    async def get_conversation(
        self, conversation_id: str, scope: Scope | None = None
    ) -> Conversation:
        async def op(conn: Conn) -> Conversation:
            conv = await get_conv(conn, conversation_id)
            check_sees(scope, conv)
            return conv

        return await self._read(op)

    async def list_conversations(
        self, flt: ConversationFilter
    ) -> tuple[list[Conversation], str | None]:
        sql, args = list_query(flt)

        async def op(conn: Conn) -> tuple[list[Conversation], str | None]:
            rows = [conv_row(r) for r in await conn.fetch(sql, *args)]
            more = len(rows) > flt.limit
            rows = rows[: flt.limit]
            return rows, (rows[-1].id if more and rows else None)

        return await self._read(op)

    async def messages(self, conversation_id: str, scope: Scope | None = None) -> list[Message]:
        async def op(conn: Conn) -> list[Message]:
            check_sees(scope, await get_conv(conn, conversation_id))
            return [
                msg_row(r)
                for r in await conn.fetch(
                    f"SELECT {MSG_COLS} FROM messages WHERE conversation_id=$1"
                    " ORDER BY created_at, id",
                    conversation_id,
                )
            ]

        return await self._read(op)


def list_query(flt: ConversationFilter) -> tuple[str, list[str | int]]:
    """A page of `list_conversations`: newest first by id, the next page from a cursor."""
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
            args.append(value)
            where.append(f"{col}=${len(args)}")
    if flt.cursor:
        args.append(flt.cursor)
        where.append(f"id < ${len(args)}")
    if flt.scope is not None:
        clause, scope_args = flt.scope.where()
        if clause:
            clause, scope_args = scope_where(clause, scope_args, len(args) + 1)
            where.append(clause)
            args.extend(scope_args)
    sql = f"SELECT {CONV_COLS} FROM conversations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    args.append(flt.limit + 1)
    sql += f" ORDER BY id DESC LIMIT ${len(args)}"
    return sql, args
