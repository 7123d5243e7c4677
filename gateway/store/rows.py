"""Rows to model objects, for every SQL backend: the column lists and their mapping are the
same on SQLite and PostgreSQL (JSON kept as text in both)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from gateway.model import Contact, Conversation, Message, dumps, loads
from gateway.store.base import Offer, QuarantinedItem

CONV_COLS = (
    "id, contact_id, channel, channel_kind, last_channel, status, queue, priority, created_at,"
    " updated_at, assignee, required_skills, tags, subject, thread_token, reply_kind,"
    " reply_address, routing, assigned_at, first_response_at, resolved_at, last_inbound_at"
)

MSG_COLS = (
    "id, conversation_id, direction, channel, sender_type, sender_id, text, created_at,"
    " updated_at, html, subject, attachments, external_id, provider_message_id, status,"
    " reason, automated, metadata, raw_blob"
)


class Row(Protocol):
    """A database row read by position (a tuple from sqlite3, an asyncpg Record)."""

    def __getitem__(self, index: int, /) -> Any: ...


def conv_row(row: Row) -> Conversation:
    """A conversation from a row of `CONV_COLS`."""
    return Conversation(
        id=row[0],
        contact_id=row[1],
        channel=row[2],
        channel_kind=row[3],
        last_channel=row[4],
        status=row[5],
        queue=row[6],
        priority=row[7],
        created_at=row[8],
        updated_at=row[9],
        assignee=row[10],
        required_skills=loads(row[11]),
        tags=loads(row[12]),
        subject=row[13],
        thread_token=row[14],
        reply_kind=row[15],
        reply_address=row[16],
        routing=loads(row[17]),
        assigned_at=row[18],
        first_response_at=row[19],
        resolved_at=row[20],
        last_inbound_at=row[21],
    )


def msg_row(row: Row) -> Message:
    """A message from a row of `MSG_COLS`."""
    return Message(
        id=row[0],
        conversation_id=row[1],
        direction=row[2],
        channel=row[3],
        sender_type=row[4],
        sender_id=row[5],
        text=row[6],
        created_at=row[7],
        updated_at=row[8],
        html=row[9],
        subject=row[10],
        attachments=loads(row[11]),
        external_id=row[12],
        provider_message_id=row[13],
        status=row[14],
        reason=row[15],
        automated=bool(row[16]),
        metadata=loads(row[17]),
        raw_blob=row[18],
    )


def message_values(m: Message) -> tuple[Any, ...]:
    """A message as the values of `MSG_COLS`, to insert."""
    return (
        m.id,
        m.conversation_id,
        m.direction,
        m.channel,
        m.sender_type,
        m.sender_id,
        m.text,
        m.created_at,
        m.updated_at,
        m.html,
        m.subject,
        dumps(m.attachments),
        m.external_id,
        m.provider_message_id,
        m.status,
        m.reason,
        m.automated,
        dumps(m.metadata),
        m.raw_blob,
    )


def contact_row(row: Row, identities: Iterable[Row], claims: Iterable[Row]) -> Contact:
    """A contact from its row (id, name, attributes, …), its identities (kind, address,
    verified) and its pending claims (kind, address)."""
    return Contact(
        row[0],
        row[1],
        loads(row[2]),
        [(str(i[0]), str(i[1]), bool(i[2])) for i in identities],
        row[3],
        row[4],
        claims=[(str(c[0]), str(c[1])) for c in claims],
    )


QUARANTINE_COLS = (
    "id, channel, content_type, length(data), external_id, reason, metadata, status, retries,"
    " message_id, created_at, updated_at"
)


def quarantine_row(row: Row) -> QuarantinedItem:
    """A quarantined item from a row of `QUARANTINE_COLS`."""
    return QuarantinedItem(
        id=row[0],
        channel=row[1],
        content_type=row[2],
        size=int(row[3]),
        external_id=row[4],
        reason=row[5],
        metadata=loads(row[6]),
        status=row[7],
        retries=int(row[8]),
        message_id=row[9],
        created_at=float(row[10]),
        updated_at=float(row[11]),
    )


OFFER_COLS = (
    "id, conversation_id, agent_id, channel_kind, queue, status, created_at, expires_at,"
    " answered_at"
)


def offer_row(row: Row) -> Offer:
    """An offer from a row of `OFFER_COLS`."""
    return Offer(*(row[i] for i in range(9)))
