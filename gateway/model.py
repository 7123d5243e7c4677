"""The normalised model: contacts, conversations, messages, agents, events (DESIGN §3)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from gateway.clock import iso
from router.reasons import localized_of

ConversationStatus = Literal["open", "assigned", "pending", "resolved", "closed"]
ACTIVE_STATUSES: tuple[str, ...] = ("open", "assigned", "pending")
# Conversations that occupy an agent's capacity.
LOAD_STATUSES: tuple[str, ...] = ("assigned", "pending")
Presence = Literal["online", "away", "offline"]
PRIORITIES = ("low", "normal", "high", "urgent")
# What the API, the console and the event stream show instead of a verification mail: the
# code proves an address, so nobody but its owner may read it (not even an agent, who could
# be talked into reading it out).
REDACTED_CODE = "[verification code sent; not shown]"


def dumps(value: Any) -> str:
    """`value` as compact JSON, non-ASCII kept as is: what `json.dumps(value,
    separators=(",", ":"), ensure_ascii=False)` gives, encoded in C (orjson). What orjson
    refuses (an integer beyond 64 bits, a lone surrogate, NaN) takes the standard library's
    path, so the result, or the error, is the same as before."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """JSON this gateway stored, decoded in C (orjson); what orjson refuses and the standard
    library reads (an integer beyond 64 bits, NaN) takes the standard library's path."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def priority_name(rank: int) -> str:
    return PRIORITIES[max(0, min(rank, len(PRIORITIES) - 1))]


@dataclass(slots=True)
class Contact:
    id: str
    name: str | None
    attributes: dict[str, str]
    # (kind, address, verified): unverified rests only on what the customer typed.
    identities: list[tuple[str, str, bool]]
    created_at: float
    merged_into: str | None = None
    # (kind, address) the customer typed but has not proven (a chat's pre-chat email): shown
    # to agents, never used to find a contact, a conversation or a reply address.
    claims: list[tuple[str, str]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "attributes": self.attributes,
            "identities": [{"kind": k, "address": a, "verified": v} for k, a, v in self.identities],
            "claims": [{"kind": k, "address": a, "verified": False} for k, a in self.claims],
            "created_at": iso(self.created_at),
            "merged_into": self.merged_into,
        }


@dataclass(slots=True)
class Conversation:
    id: str
    contact_id: str
    channel: str
    channel_kind: str
    last_channel: str
    status: str
    queue: str
    priority: int
    created_at: float
    updated_at: float
    assignee: str | None = None
    required_skills: dict[str, int] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    subject: str | None = None
    thread_token: str | None = None
    reply_kind: str | None = None
    reply_address: str | None = None
    routing: dict[str, Any] = field(default_factory=dict)
    assigned_at: float | None = None
    first_response_at: float | None = None
    resolved_at: float | None = None
    last_inbound_at: float | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contact_id": self.contact_id,
            "channel": self.channel,
            "channel_kind": self.channel_kind,
            "last_channel": self.last_channel,
            "status": self.status,
            "queue": self.queue,
            "assignee": self.assignee,
            "priority": priority_name(self.priority),
            "required_skills": self.required_skills,
            "tags": self.tags,
            "subject": self.subject,
            "routing": with_localized(self.routing),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "assigned_at": iso(self.assigned_at),
            "first_response_at": iso(self.first_response_at),
            "resolved_at": iso(self.resolved_at),
            "last_inbound_at": iso(self.last_inbound_at),
        }


@dataclass(slots=True)
class Message:
    id: str
    conversation_id: str
    direction: Literal["in", "out"]
    channel: str
    sender_type: Literal["contact", "agent", "bot", "system"]
    sender_id: str | None
    text: str
    created_at: float
    updated_at: float
    html: str | None = None
    subject: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    external_id: str | None = None
    provider_message_id: str | None = None
    status: str | None = None
    reason: str | None = None
    automated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    raw_blob: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "direction": self.direction,
            "channel": self.channel,
            "sender": {"type": self.sender_type, "id": self.sender_id},
            "text": self.text if "verification" not in self.metadata else REDACTED_CODE,
            "html": self.html,
            "subject": self.subject,
            "attachments": self.attachments,
            "external_id": self.external_id,
            "provider_message_id": self.provider_message_id,
            "status": self.status,
            "reason": self.reason,
            "automated": self.automated,
            # `text` was cut to the gateway's limit; the whole is in `raw` (or, without a
            # raw message, in a `full-text.txt` attachment). Lengths are in characters.
            "truncated": bool(self.metadata.get("truncated")),
            "original_length": self.metadata.get("original_length"),
            "raw": f"/v1/blobs/{self.raw_blob}" if self.raw_blob else None,
            # Issue 15: the articles the widget suggested before the visitor sent this.
            "kb_suggestions": list(self.metadata.get("kb_suggestions") or []),
            # Issue 15: "portal" for a customer's answer written in the customer portal.
            "via": self.metadata.get("via") if self.direction == "in" else None,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(slots=True)
class AgentState:
    id: str
    presence: str
    capacity: dict[str, int]
    last_assigned_at: float | None = None

    def capacity_for(self, channel_kind: str) -> int:
        return self.capacity.get(channel_kind, self.capacity.get("default", 0))


@dataclass(slots=True)
class Event:
    id: int
    type: str
    at: float
    data: dict[str, Any]
    # `data` as JSON, when the store already encoded it (saves encoding it per subscriber).
    data_json: str | None = None

    @property
    def durable(self) -> bool:
        """Stored in the event log (resumable with `?since=`); live-only events have id 0."""
        return self.id > 0

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id if self.durable else None,
            "type": self.type,
            "at": iso(self.at),
            "data": self.data,
        }


def event_json(event: Event) -> str:
    """The event as the stream and webhooks send it, encoding `data` at most once."""
    if event.data_json is None:
        event.data_json = dumps(event.data)
    ident = str(event.id) if event.durable else "null"
    return (
        f'{{"id":{ident},"type":{_type_json(event.type)},"at":"{iso(event.at)}",'
        f'"data":{event.data_json}}}'
    )


_TYPE_JSON: dict[str, str] = {}


def _type_json(type_: str) -> str:
    """An event type as a JSON string (ASCII-escaped, as `json.dumps` gives it); the few
    types there are, encoded once each."""
    encoded = _TYPE_JSON.get(type_)
    if encoded is None:
        encoded = json.dumps(type_)
        if len(_TYPE_JSON) < 1024:
            _TYPE_JSON[type_] = encoded
    return encoded


def ephemeral(type_: str, data: dict[str, Any], at: float) -> Event:
    """A live-only event (typing indicators): published, never stored."""
    return Event(0, type_, at, data)


@dataclass(slots=True)
class NewEvent:
    """An event written in the same transaction as the change it describes."""

    type: str
    data: dict[str, Any]


def with_localized(routing: dict[str, Any]) -> dict[str, Any]:
    """Routing metadata as served: with `reasons_localized` (`{"en": reasons}` for rows
    stored before reasons were kept per language)."""
    if "reasons_localized" in routing or "reasons" not in routing:
        return routing
    return {**routing, "reasons_localized": localized_of(routing)}
