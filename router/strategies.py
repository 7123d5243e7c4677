"""Agent selection: which eligible agent of a queue gets a conversation (pure).

The caller provides snapshots (agents with presence, load, capacity and skills for the
conversation's channel kind; the clock) and claims the decision atomically itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .config import QueueConfig
from .reasons import Reason, join

Presence = Literal["online", "away", "offline"]


@dataclass(frozen=True)
class AgentSnapshot:
    """An agent as the router sees it for one channel kind."""

    id: str
    name: str
    presence: Presence
    queues: frozenset[str]
    skills: dict[str, int] = field(hash=False)
    capacity: int
    load: int
    last_assigned_at: float | None = None


@dataclass(frozen=True)
class ConversationSnapshot:
    """A conversation waiting for an agent; `priority` is a `PRIORITY_RANK` value."""

    id: str
    queue: str
    priority: int
    required_skills: dict[str, int] = field(hash=False)
    channel_kind: str
    created_at: float
    # The nearest SLA due time (routing order `sla`; 1e18: none).
    sla_due: float = 1e18
    # Agents not to pick for it (they declined it or lost it lately), and the agent it
    # goes back to when that agent can take it (sticky routing).
    exclude: frozenset[str] = frozenset()
    sticky: str | None = None


@dataclass
class Decision:
    """Which agent gets the conversation (None: it waits), with the reasons."""

    conversation_id: str
    agent_id: str | None
    queue: str
    strategy: str | None
    reasons: list[str]


def _exclusion(agent: AgentSnapshot, queue: str, required: Mapping[str, int]) -> list[str]:
    """Why `agent` cannot take a conversation of `queue` (empty list: eligible)."""
    if queue not in agent.queues:
        return [Reason("agent.not_in_queue", queue=repr(queue))]
    problems: list[str] = []
    if agent.presence != "online":
        problems.append(Reason(f"agent.{agent.presence}"))
    if agent.load >= agent.capacity:
        problems.append(Reason("agent.at_capacity", load=agent.load, capacity=agent.capacity))
    for skill, level in required.items():
        have = agent.skills.get(skill, 0)
        if have < level:
            problems.append(
                Reason("agent.lacks_skill_has", skill=skill, level=level, have=have)
                if have
                else Reason("agent.lacks_skill", skill=skill, level=level)
            )
    return problems


DECLINED = Reason("agent.declined")


def _idle_key(agent: AgentSnapshot) -> tuple[int, float]:
    # Never assigned counts as idle forever, so it comes first.
    if agent.last_assigned_at is None:
        return (0, 0.0)
    return (1, agent.last_assigned_at)


def _least_busy_key(agent: AgentSnapshot) -> tuple[float, int, tuple[int, float], str]:
    return (agent.load / agent.capacity, agent.load, _idle_key(agent), agent.id)


def _skill_score(agent: AgentSnapshot, required: Mapping[str, int]) -> int:
    return sum(agent.skills.get(skill, 0) for skill in required)


def _pick(
    strategy: str, eligible: list[AgentSnapshot], required: Mapping[str, int], rr_last: str | None
) -> AgentSnapshot:
    if strategy == "round_robin":
        ordered = sorted(eligible, key=lambda a: a.id)
        if rr_last is not None:
            for agent in ordered:
                if agent.id > rr_last:
                    return agent
        return ordered[0]
    if strategy == "least_busy":
        return min(eligible, key=_least_busy_key)
    if strategy == "longest_idle":
        return min(eligible, key=lambda a: (_idle_key(a), a.id))
    if strategy == "skills":
        return min(eligible, key=lambda a: (-_skill_score(a, required), *_least_busy_key(a)))
    raise ValueError(f"unknown strategy {strategy!r}")


def _idle_text(agent: AgentSnapshot, now: float) -> Reason:
    if agent.last_assigned_at is None:
        return Reason("detail.never_assigned")
    return Reason("detail.last_assigned", seconds=f"{max(0.0, now - agent.last_assigned_at):.0f}")


def decide(
    conv: ConversationSnapshot,
    queue: QueueConfig,
    agents: Sequence[AgentSnapshot],
    rr_last: str | None,
    now: float,
) -> Decision:
    """Pick an agent of `queue` for `conv` by the queue's strategy.

    Eligible: member of the queue, online, load < capacity, and every required skill at
    or above its minimum level. `rr_last` is the agent this queue assigned last.
    """
    required = conv.required_skills
    reasons: list[str] = []
    eligible: list[AgentSnapshot] = []
    for agent in agents:
        problems = _exclusion(agent, queue.name, required)
        if agent.id in conv.exclude:
            problems.append(DECLINED)
        if problems:
            reasons.append(
                Reason("agent.excluded", agent=agent.id, problems=join("comma", problems))
            )
        else:
            eligible.append(agent)
    strategy = queue.strategy
    if not eligible:
        reasons.append(Reason("queue.no_agent", queue=repr(queue.name)))
        return Decision(conv.id, None, queue.name, strategy, reasons)
    sticky = next((a for a in eligible if a.id == conv.sticky), None)
    if sticky is not None:
        reasons.append(sticky_reason(sticky))
        return Decision(conv.id, sticky.id, queue.name, "sticky", reasons)
    chosen = _pick(strategy, eligible, required, rr_last)
    reasons.append(chosen_reason(chosen, strategy, rr_last, required, now))
    return Decision(conv.id, chosen.id, queue.name, strategy, reasons)


def sticky_reason(agent: AgentSnapshot) -> Reason:
    return Reason("agent.sticky", agent=agent.id, load=agent.load, capacity=agent.capacity)


def chosen_reason(
    chosen: AgentSnapshot,
    strategy: str,
    rr_last: str | None,
    required: Mapping[str, int],
    now: float,
) -> Reason:
    """Why `chosen` got the conversation, e.g. `alice chosen by skills; skill score 8; load 1/3`."""
    # One Reason per variant: this is on the dispatcher's path for every assignment.
    load, capacity = chosen.load, chosen.capacity
    if strategy == "round_robin" and rr_last is not None:
        return Reason(
            "agent.chosen_after",
            agent=chosen.id,
            strategy=strategy,
            load=load,
            capacity=capacity,
            previous=rr_last,
        )
    if strategy == "longest_idle":
        return Reason(
            "agent.chosen_idle",
            agent=chosen.id,
            strategy=strategy,
            load=load,
            capacity=capacity,
            idle=_idle_text(chosen, now),
        )
    if strategy == "skills":
        return Reason(
            "agent.chosen_skills",
            agent=chosen.id,
            strategy=strategy,
            load=load,
            capacity=capacity,
            score=_skill_score(chosen, required),
        )
    return Reason("agent.chosen", agent=chosen.id, strategy=strategy, load=load, capacity=capacity)


def order_waiting(
    convs: Iterable[ConversationSnapshot], by_sla: bool = False
) -> list[ConversationSnapshot]:
    """Highest priority first, then oldest, then by id; with `by_sla` (routing order
    `sla`), the nearest SLA due time comes between priority and age."""
    if by_sla:
        return sorted(convs, key=lambda c: (-c.priority, c.sla_due, c.created_at, c.id))
    return sorted(convs, key=lambda c: (-c.priority, c.created_at, c.id))


def plan(
    waiting: Iterable[ConversationSnapshot],
    queues: Mapping[str, QueueConfig],
    agents: Sequence[AgentSnapshot],
    rr_last: Mapping[str, str],
    now: float,
) -> list[Decision]:
    """Decide and explain every waiting conversation in `order_waiting` order, each against
    every agent: the reference `router.Planner` is checked against. The dispatcher uses the
    Planner, whose cost follows the candidates instead.

    Each assignment is applied to a working copy of the snapshot (load + 1,
    last_assigned_at = now, round-robin cursor) so later decisions see it. Returns one
    Decision per conversation, in that order. The inputs are not modified.
    """
    current = list(agents)
    index = {agent.id: i for i, agent in enumerate(current)}
    cursors = dict(rr_last)
    decisions: list[Decision] = []
    for conv in order_waiting(waiting):
        queue = queues.get(conv.queue)
        if queue is None:
            decisions.append(
                Decision(
                    conv.id,
                    None,
                    conv.queue,
                    None,
                    [Reason("queue.unknown", queue=repr(conv.queue))],
                )
            )
            continue
        decision = decide(conv, queue, current, cursors.get(queue.name), now)
        if decision.agent_id is not None:
            i = index[decision.agent_id]
            agent = current[i]
            current[i] = dataclasses.replace(agent, load=agent.load + 1, last_assigned_at=now)
            cursors[queue.name] = agent.id
        decisions.append(decision)
    return decisions
