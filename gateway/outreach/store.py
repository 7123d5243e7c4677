"""The store's part in proactive outreach: one unit of work that finds or makes the
contact, opens the conversation (assigned to the starting agent, or waiting for routing)
and queues its first message in the outbox. Implemented per store
(gateway/store/sqlite/conversations.py, gateway/store/postgres/conversations.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Identity
from gateway.ids import new_id
from gateway.model import Conversation, Event, Message, NewEvent
from gateway.store.base import Classifier, Conflict, Scope, StoreError
from router.reasons import Reason, localize, localized_of


class OutreachRefused(StoreError):
    """The conversation cannot be started: an API error (`status`, 422 unless the caller
    may not) with its code."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ConversationExists(Conflict):
    """The contact has an active conversation already: write there (an API 409). Its id
    only when the caller sees it (`None`: one the caller's scope hides)."""

    def __init__(self, conversation_id: str | None) -> None:
        where = f" {conversation_id}" if conversation_id is not None else ""
        super().__init__(f"the contact has an active conversation{where}; reply there instead")
        self.conversation_id = conversation_id


@dataclass(slots=True)
class StartRequest:
    channel: str
    channel_kind: str
    # The identity kind the channel addresses (gateway/outreach/policy.py).
    identity_kind: str
    text: str
    sender_id: str
    by: str
    now: float
    # The router's classification from the contact's attributes (pure, run in the unit).
    classify: Classifier
    # Who: a known contact, or an address (normalised; a new contact when unknown).
    contact_id: str | None = None
    to: Identity | None = None
    name: str | None = None
    subject: str | None = None
    # The starting agent; None: routing assigns it by the rules.
    assignee: str | None = None
    # Telegram: the contact must have written on this channel before.
    needs_inbound: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    # The caller's scope: it starts only a conversation it will see (None: unrestricted).
    scope: Scope | None = None


@dataclass(slots=True)
class StartOutcome:
    conversation: Conversation
    message: Message
    contact_id: str
    events: list[Event]


def new_conversation(
    req: StartRequest, contact_id: str, to: Identity, attributes: dict[str, str]
) -> Conversation:
    """The conversation the request opens (assigned to the starting agent, or open for
    routing), its reasons saying who started it."""
    cls = req.classify(dict(attributes))
    started = Reason("core.outreach_started", by=req.by)
    return Conversation(
        id=new_id("cv"),
        contact_id=contact_id,
        channel=req.channel,
        channel_kind=req.channel_kind,
        last_channel=req.channel,
        status="assigned" if req.assignee else "open",
        queue=cls.queue,
        priority=cls.priority,
        created_at=req.now,
        updated_at=req.now,
        assignee=req.assignee,
        required_skills=cls.required_skills,
        tags=cls.tags,
        subject=req.subject,
        thread_token=new_id("t").split("_", 1)[1][-12:],
        reply_kind=to.kind,
        reply_address=to.address,
        routing={
            "rule": cls.rule,
            "rules": cls.rules,
            "reasons": [started, *cls.reasons],
            "reasons_localized": localize([started, *cls.reasons]),
            "outreach": {"by": req.by, "agent": req.assignee},
        },
        assigned_at=req.now if req.assignee else None,
    )


def start_events(conv: Conversation, req: StartRequest, new_contact: bool) -> list[NewEvent]:
    """What the unit appends before the first message's `message.queued`."""
    events = [NewEvent("contact.created", {"contact_id": conv.contact_id})] if new_contact else []
    events.append(NewEvent("conversation.created", {"conversation": conv.to_api()}))
    if conv.assignee:
        events.append(
            NewEvent(
                "conversation.assigned",
                {
                    "conversation_id": conv.id,
                    "agent": conv.assignee,
                    "queue": conv.queue,
                    "strategy": "manual",
                    "reasons": conv.routing["reasons"][:1],
                    "reasons_localized": {
                        lang: texts[:1] for lang, texts in localized_of(conv.routing).items()
                    },
                    "by": req.by,
                    "conversation": conv.to_api(),
                },
            )
        )
    return events


def check_sees_new(req: StartRequest, conv: Conversation) -> None:
    """Refuse (403 `queue_scope`) a conversation the caller could not see once started:
    classified into a queue outside its scope and not assigned to the caller itself.
    Checked in the unit on the classification it stores, before the conversation is
    written; raising rolls the unit back (a contact it made included)."""
    if req.scope is not None and not req.scope.sees(conv):
        raise OutreachRefused(
            "queue_scope",
            f"the conversation would be in queue {conv.queue!r}, which you do not see; "
            "someone who works in that queue can start it",
            status=403,
        )


def exists(req: StartRequest, active: Conversation) -> ConversationExists:
    """The 409 for the contact's active conversation, naming it only to a caller who sees
    it (existence of the contact's conversation is told, which one is not)."""
    visible = req.scope is None or req.scope.sees(active)
    return ConversationExists(active.id if visible else None)


def refuse_unknown_contact(req: StartRequest) -> OutreachRefused:
    return OutreachRefused("unknown_contact", f"contact {req.contact_id} not found")


def refuse_unknown_agent(agent: str) -> OutreachRefused:
    return OutreachRefused("unknown_agent", f"agent {agent} not found")


def refuse_missing(req: StartRequest) -> OutreachRefused:
    return OutreachRefused(
        "no_address",
        f"the contact has no {req.identity_kind} address for channel {req.channel!r}",
    )


def refuse_never_wrote(req: StartRequest) -> OutreachRefused:
    return OutreachRefused(
        "never_wrote",
        f"the contact never wrote on channel {req.channel!r}: a Telegram bot cannot write first",
    )


def refuse_opted_out() -> OutreachRefused:
    return OutreachRefused(
        "opted_out", "the contact asked not to be contacted (attribute do_not_contact)"
    )


class OutreachStore(ABC):
    @abstractmethod
    async def start_conversation(self, request: StartRequest) -> StartOutcome:
        """Contact, conversation and first outbound message, in one transaction. Raises
        `OutreachRefused` (unknown contact, no address of the kind, opted out, never wrote),
        `ConversationExists`."""


def outreach_store(store: object) -> OutreachStore:
    if not isinstance(store, OutreachStore):
        raise TypeError(f"{type(store).__name__} cannot start conversations")
    return store
