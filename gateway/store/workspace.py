"""The store's part in the agent workspace (issue 14): internal notes, canned replies, and
the contact panel's merges and splits. A role of its own, implemented per backend
(gateway/store/sqlite/workspace.py, gateway/store/postgres/workspace.py).

Notes live in a table of their own, not among the messages: nothing that reads messages
(the outbox, the widget's history, SLA clocks, KPIs, surveys) can ever see one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Identity
from gateway.clock import iso
from gateway.model import Contact, Conversation, Event, NewEvent, loads
from gateway.store.base import Scope
from gateway.store.rows import Row


@dataclass(slots=True)
class Note:
    """An internal note on a conversation's timeline: agents only, never sent."""

    id: str
    conversation_id: str
    sender_type: str
    sender_id: str | None
    text: str
    mentions: list[str]
    created_at: float
    attachments: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """Shaped like a message (so a timeline renders both), marked `private`."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "direction": "note",
            "private": True,
            "channel": None,
            "sender": {"type": self.sender_type, "id": self.sender_id},
            "text": self.text,
            "mentions": self.mentions,
            "html": None,
            "subject": None,
            "attachments": self.attachments,
            "external_id": None,
            "provider_message_id": None,
            "status": None,
            "reason": None,
            "automated": False,
            "truncated": False,
            "original_length": None,
            "raw": None,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at),
        }


@dataclass(slots=True)
class CannedReply:
    """A prepared answer: `team` (for `queues`; empty = every queue) or `personal` (of
    `agent`). `texts`: language → text with `{{placeholders}}`."""

    id: str
    shortcut: str
    title: str
    texts: dict[str, str]
    scope: str  # team | personal
    queues: list[str] = field(default_factory=list)
    agent: str | None = None
    source: str = "api"  # api | config
    created_at: float | None = None
    updated_at: float | None = None

    @property
    def owner(self) -> str:
        """Who a shortcut is unique for: the agent of a personal reply, '' for the team."""
        return (self.agent or "") if self.scope == "personal" else ""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "shortcut": self.shortcut,
            "title": self.title,
            "text": self.texts,
            "scope": self.scope,
            "queues": self.queues,
            "agent": self.agent,
            "source": self.source,
            "created_at": iso(self.created_at) if self.created_at is not None else None,
            "updated_at": iso(self.updated_at) if self.updated_at is not None else None,
        }


@dataclass(slots=True)
class ContactMerge:
    """One merge of contact `source` into `target` (by hand or by a verification)."""

    id: str
    target: str
    source: str
    at: float
    by: str | None
    conversations: list[str]
    undone_at: float | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "other": self.source,
            "at": iso(self.at),
            "by": self.by,
            "conversations": self.conversations,
            "undone_at": iso(self.undone_at) if self.undone_at is not None else None,
        }


@dataclass(slots=True)
class Split:
    """What splitting an identity off did: the new contact and the conversations moved."""

    contact_id: str
    source_id: str
    conversations: list[str]


# --- rows (the same on SQLite and PostgreSQL) ---------------------------------------------
NOTE_COLS = "id, conversation_id, sender_type, sender_id, text, mentions, created_at, attachments"
CANNED_COLS = "id, shortcut, title, texts, scope, queues, agent, created_at, updated_at"
MERGE_COLS = "id, target, source, at, by_whom, conversations, undone_at"


def note_row(r: Row) -> Note:
    return Note(r[0], r[1], r[2], r[3], r[4], loads(r[5]), float(r[6]), loads(r[7]))


def canned_row(r: Row) -> CannedReply:
    return CannedReply(
        id=r[0],
        shortcut=r[1],
        title=r[2],
        texts=loads(r[3]),
        scope=r[4],
        queues=loads(r[5]),
        agent=r[6],
        created_at=float(r[7]),
        updated_at=float(r[8]),
    )


def merge_row(r: Row) -> ContactMerge:
    return ContactMerge(
        r[0],
        r[1],
        r[2],
        float(r[3]),
        r[4],
        list(loads(r[5])),
        None if r[6] is None else float(r[6]),
    )


def note_events(note: Note) -> list[NewEvent]:
    """`message.created` (private) and one `agent.mentioned` per mentioned agent."""
    events = [
        NewEvent(
            "message.created",
            {
                "conversation_id": note.conversation_id,
                "message_id": note.id,
                "private": True,
                "note": note.to_api(),
            },
        )
    ]
    events += [
        NewEvent(
            "agent.mentioned",
            {
                "agent": agent,
                "conversation_id": note.conversation_id,
                "message_id": note.id,
                "by": note.sender_id,
            },
        )
        for agent in note.mentions
    ]
    return events


class WorkspaceStore(ABC):
    """Every method is atomic; the ones that change state return their events."""

    # --- notes -----------------------------------------------------------------------------
    @abstractmethod
    async def note_add(
        self,
        conversation_id: str,
        sender_type: str,
        sender_id: str | None,
        text: str,
        mentions: list[str],
        now: float,
        scope: Scope | None = None,
        attachments: list[dict[str, Any]] | None = None,
        blobs: dict[str, tuple[str, bytes]] | None = None,
    ) -> tuple[Note, list[Event]]:
        """Keep a note (with `blobs` stored alongside): `message.created` (private) and
        one `agent.mentioned` per mentioned agent. NotFound when the scope does not see
        the conversation."""

    @abstractmethod
    async def notes(self, conversation_id: str, scope: Scope | None = None) -> list[Note]:
        """The conversation's notes, oldest first."""

    # --- canned replies --------------------------------------------------------------------
    @abstractmethod
    async def canned_list(self) -> list[CannedReply]:
        """Every stored canned reply (the API filters what a caller sees)."""

    @abstractmethod
    async def canned_get(self, reply_id: str) -> CannedReply: ...

    @abstractmethod
    async def canned_put(self, reply: CannedReply, now: float) -> CannedReply:
        """Insert, or replace the one with its id. Conflict when its owner already has
        another reply with that shortcut."""

    @abstractmethod
    async def canned_delete(self, reply_id: str) -> None: ...

    # --- contact panel ---------------------------------------------------------------------
    @abstractmethod
    async def contact_conversations(
        self, contact_id: str, scope: Scope | None = None, limit: int = 200
    ) -> list[Conversation]:
        """The contact's conversations on every channel, newest first (what `scope` sees)."""

    @abstractmethod
    async def contact_merges(self, contact_id: str) -> list[ContactMerge]:
        """The merges into this contact, newest first."""

    @abstractmethod
    async def contact_merge(
        self, target: str, source: str, by: str | None, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        """`source` joins `target` with its identities and conversations (`contact.merged`).
        Conflict when they are one contact or `source` is merged already."""

    @abstractmethod
    async def contact_merge_undo(
        self, target: str, merge_id: str, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        """The merged contact stands alone again with its identities and the conversations
        the merge moved (`contact.unmerged`). Conflict when it was undone already."""

    @abstractmethod
    async def contact_split(
        self, contact_id: str, identity: Identity, now: float
    ) -> tuple[Split, list[Event]]:
        """The identity becomes a new contact of its own, with the conversations that
        answer to it (`contact.split`). Conflict when it is the contact's only one."""

    @abstractmethod
    async def contact_rename(
        self, contact_id: str, name: str | None, now: float
    ) -> tuple[Contact, list[Event]]:
        """Set the contact's display name (`contact.updated`)."""


def workspace_store(store: object) -> WorkspaceStore:
    """The store's workspace role (every backend has it)."""
    if not isinstance(store, WorkspaceStore):
        raise TypeError(f"{type(store).__name__} has no workspace role")
    return store
