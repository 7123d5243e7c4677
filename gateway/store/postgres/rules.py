"""THE BUSINESS RULES the PostgreSQL store applies — copied from gateway/store/sqlite.py.

Temporary, and the only place they live in this package: the store modules here only read
and write rows and ask these functions what a change means. Each function is pure (no I/O)
and says where in sqlite.py it comes from. When gateway/domain/ has them (branch `core`),
each is replaced by a call to its domain function and this module goes away.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Identity
from gateway.ids import new_id
from gateway.model import LOAD_STATUSES, Conversation, NewEvent
from gateway.store.base import Claim, Classification, Conflict, IngestRequest

# Delivery receipts only move forward (SqliteStore._apply_receipt).
_STATUS_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def receipt_applies(current: str | None, status: str) -> bool:
    """A receipt changes a message's status unless it failed already or it goes back."""
    if current == "failed":
        return False
    return status == "failed" or _STATUS_ORDER.get(status, 0) > _STATUS_ORDER.get(current or "", 0)


# --- load accounting (SqliteStore._adjust_load) -------------------------------------------
def load_holder(assignee: str | None, status: str) -> str | None:
    """Whose capacity a conversation in this state occupies."""
    return assignee if status in LOAD_STATUSES else None


# --- threading (SqliteStore._ingest) --------------------------------------------------------
def too_old_to_reopen(conv: Conversation, now: float, window: float) -> bool:
    """A thread key found a resolved conversation resolved before the reopen window."""
    return conv.status == "resolved" and (conv.resolved_at or 0) < now - window


def new_conversation(
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
        routing={"rule": cls.rule, "reasons": cls.reasons},
        reply_kind=identity.kind,
        reply_address=identity.address,
        last_inbound_at=now,
    )


def take_inbound(conv: Conversation, channel: str, identity: Identity, now: float) -> bool:
    """An existing conversation takes a new inbound message (SqliteStore._ingest and
    _update_for_inbound): a resolved one reopens (True), a pending one needs its agent
    again; replies go where the customer wrote from."""
    reopened = False
    if conv.status == "resolved":
        reopened = True
        conv.status, conv.assignee, conv.resolved_at = "open", None, None
    elif conv.status == "pending":
        conv.status = "assigned" if conv.assignee else "open"
    conv.last_channel = channel
    conv.reply_kind, conv.reply_address = identity.kind, identity.address
    conv.updated_at = conv.last_inbound_at = now
    return reopened


# --- lifecycle (SqliteStore._add_outbound, assign, transfer, resolve, reopen, claim) -------
def after_reply(conv: Conversation, sender_type: str, now: float) -> tuple[str, float | None]:
    """(status, first_response_at) once a reply is queued: an agent's first reply stamps
    the first response, and an assigned conversation waits for the customer."""
    status, first = conv.status, conv.first_response_at
    if sender_type == "agent":
        if first is None:
            first = now
        if status == "assigned":
            status = "pending"
    return status, first


def assign(conv: Conversation, agent_id: str, by: str | None, now: float) -> NewEvent:
    check_assignable(conv)
    conv.assignee, conv.assigned_at = agent_id, now
    if conv.status == "open":
        conv.status = "assigned"
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


def check_assignable(conv: Conversation) -> None:
    if conv.status in ("resolved", "closed"):
        raise Conflict(f"the conversation is {conv.status}; reopen it first")


def transfer(conv: Conversation, queue: str, by: str | None) -> NewEvent:
    check_assignable(conv)
    previous = conv.queue
    conv.queue, conv.assignee, conv.status, conv.assigned_at = queue, None, "open", None
    return NewEvent(
        "conversation.transferred",
        {"conversation_id": conv.id, "from_queue": previous, "queue": queue, "by": by},
    )


def resolve(conv: Conversation, by: str | None, now: float) -> NewEvent:
    if conv.status in ("resolved", "closed"):
        raise Conflict(f"the conversation is already {conv.status}")
    conv.status, conv.resolved_at = "resolved", now
    return NewEvent("conversation.resolved", {"conversation_id": conv.id, "by": by})


def reopen(conv: Conversation, by: str | None) -> NewEvent:
    if conv.status not in ("resolved", "closed"):
        raise Conflict(f"the conversation is {conv.status}, not resolved")
    conv.status, conv.assignee, conv.resolved_at, conv.assigned_at = "open", None, None, None
    return NewEvent("conversation.reopened", {"conversation_id": conv.id, "by": by})


def claimed(claim: Claim, routing: dict[str, Any]) -> NewEvent:
    return NewEvent(
        "conversation.assigned",
        {
            "conversation_id": claim.conversation_id,
            "agent": claim.agent_id,
            "queue": claim.queue,
            "strategy": claim.strategy,
            "rule": routing.get("rule"),
            "reasons": [*routing.get("reasons", []), *claim.reasons],
            "by": "router",
        },
    )
