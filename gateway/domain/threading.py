"""Which conversation an inbound message joins.

The rule, in order:

1. A conversation the message's thread keys point at (quoted Message-IDs, then the thread
   token) — only one of the sender's own contact, never a closed one: the message joins it
   if it is active, reopens it if it was resolved within the reopen window — unless the
   contact has an active conversation (a contact has one active conversation at most, a
   constraint of the schema) — and ignores it otherwise.
2. Otherwise the contact's active conversation (open, assigned or pending), the most
   recently updated one.
3. Otherwise the contact's conversation resolved within the reopen window, the most
   recently updated one: the message reopens it.
4. Otherwise a new conversation.

"Within the window" is `resolved_at >= now - reopen_window`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.model import ACTIVE_STATUSES


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the rule needs to know of a conversation."""

    id: str
    status: str
    updated_at: float
    resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the message goes: `join` or `reopen` conversation `conversation_id`, or
    `create` a new one."""

    action: Literal["join", "reopen", "create"]
    conversation_id: str | None = None


CREATE = Placement("create")


def reopenable(candidate: Candidate, now: float, reopen_window: float) -> bool:
    """Resolved, and recently enough that a customer's message brings it back."""
    return candidate.status == "resolved" and (candidate.resolved_at or 0.0) >= now - reopen_window


def _placed(candidate: Candidate, now: float, reopen_window: float) -> Placement | None:
    if candidate.status in ACTIVE_STATUSES:
        return Placement("join", candidate.id)
    if reopenable(candidate, now, reopen_window):
        return Placement("reopen", candidate.id)
    return None  # closed, or resolved before the window


def place(
    thread_hit: Candidate | None,
    contact_conversations: Iterable[Candidate],
    now: float,
    reopen_window: float,
) -> Placement:
    """`thread_hit`: the sender's own conversation the thread keys point at, if any;
    `contact_conversations`: the contact's conversations (any status; a store may pass
    only the active ones and those resolved within the window, the only ones that can
    win)."""
    active: Candidate | None = None
    recent: Candidate | None = None
    for c in contact_conversations:
        if c.status in ACTIVE_STATUSES:
            if active is None or c.updated_at > active.updated_at:
                active = c
        elif reopenable(c, now, reopen_window) and (
            recent is None or c.updated_at > recent.updated_at
        ):
            recent = c
    if thread_hit is not None:
        placed = _placed(thread_hit, now, reopen_window)
        if placed is not None and (placed.action == "join" or active is None):
            return placed
    if active is not None:
        return Placement("join", active.id)
    if recent is not None:
        return Placement("reopen", recent.id)
    return CREATE
