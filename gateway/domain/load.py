"""Agent load: which conversations occupy an agent's capacity, and whether one more fits.

A conversation occupies its assignee's capacity for its channel kind while it is
`assigned` or `pending`. Stores keep a counter per (agent, channel kind); every change of
status or assignee moves the counters by `changes(before, after)`.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.model import LOAD_STATUSES

# (assignee, status) of a conversation.
Holder = tuple[str | None, str]


def occupant(holder: Holder) -> str | None:
    """The agent whose capacity the conversation occupies, if any."""
    assignee, status = holder
    return assignee if status in LOAD_STATUSES else None


def changes(before: Holder, after: Holder) -> list[tuple[str, int]]:
    """How the counters move: (agent, -1) for the one it leaves, (agent, +1) for the one
    it now occupies; nothing when the occupant stays the same."""
    was, now = occupant(before), occupant(after)
    if was == now:
        return []
    moves: list[tuple[str, int]] = []
    if was is not None:
        moves.append((was, -1))
    if now is not None:
        moves.append((now, +1))
    return moves


def capacity_for(capacity: Mapping[str, int], channel_kind: str) -> int:
    """An agent's capacity for a channel kind: its own entry, else `default`, else 0."""
    return capacity.get(channel_kind, capacity.get("default", 0))


def has_room(load: int, capacity: int) -> bool:
    return load < capacity


def assignment_limit(requested: int | None, current: int) -> int | None:
    """The capacity a manual assignment is checked against: none when forced (`requested`
    is None), else the lower of what the caller read and what the agent has now (an admin
    may have lowered it in between)."""
    return None if requested is None else min(requested, current)
