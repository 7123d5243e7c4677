"""What the agent workspace's API answers (issue 14), as models for the OpenAPI document
(the shapes: gateway/store/workspace.py `to_api`, gateway/api/workspace.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.api.schemas import ContactOut, ConversationOut, MessageOut, Out


class NoteOut(MessageOut):
    """An internal note, shaped like a message: `direction` note, `private` true."""

    mentions: list[str] = Field(description="The agents the note mentions (notified).")


class NoteList(Out):
    notes: list[NoteOut]


class CannedReplyOut(Out):
    id: str = Field(description="`config:…` for a reply of the config file (read-only).")
    shortcut: str
    title: str
    text: dict[str, str] = Field(description="Per language (de, en), with placeholders.")
    scope: Literal["team", "personal"]
    queues: list[str] = Field(description="Team: its queues (empty: every queue).")
    agent: str | None
    source: Literal["config", "api"]
    created_at: str | None
    updated_at: str | None


class CannedReplyList(Out):
    canned_replies: list[CannedReplyOut]


class CannedRendered(Out):
    id: str
    shortcut: str
    language: str = Field(description="The variant used: the contact's language, else default.")
    text: str = Field(description="Filled in: send it as the reply's text.")


class MergeOut(Out):
    id: str
    other: str = Field(description="The contact that joined this one.")
    at: str
    by: str | None = Field(description="Who merged (null: a verification).")
    conversations: list[str]
    undone_at: str | None


class ContactPanel(ContactOut):
    """A contact with every conversation it has (that the token sees) and its merges."""

    language: str | None
    segment: str | None
    conversations: list[ConversationOut]
    merges: list[MergeOut]


class MergeResult(Out):
    merge_id: str
    contact: ContactPanel
    moved: dict[str, list[object]] = Field(description="`conversations` ids, `identities`.")


class SplitResult(Out):
    contact: ContactPanel = Field(description="The new contact holding the identity.")
    source: ContactPanel


class ViewerOut(Out):
    agent: str
    name: str
    typing: bool
    since: str
    seen_at: str


class ViewingOut(Out):
    conversation_id: str
    viewers: list[ViewerOut]
