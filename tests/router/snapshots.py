"""Builders of the router's snapshots for the routing tests."""

from __future__ import annotations

from router import PRIORITY_RANK, AgentSnapshot, ConversationSnapshot, Presence

NOW = 10_000.0


def agent(
    id: str,
    *,
    presence: Presence = "online",
    queues: tuple[str, ...] = ("q",),
    skills: dict[str, int] | None = None,
    capacity: int = 3,
    load: int = 0,
    last: float | None = None,
) -> AgentSnapshot:
    return AgentSnapshot(
        id=id,
        name=id.title(),
        presence=presence,
        queues=frozenset(queues),
        skills=skills or {},
        capacity=capacity,
        load=load,
        last_assigned_at=last,
    )


def conv(
    id: str = "c1",
    *,
    queue: str = "q",
    priority: str = "normal",
    skills: dict[str, int] | None = None,
    created: float = 0.0,
) -> ConversationSnapshot:
    return ConversationSnapshot(
        id=id,
        queue=queue,
        priority=PRIORITY_RANK[priority],
        required_skills=skills or {},
        channel_kind="email",
        created_at=created,
    )
