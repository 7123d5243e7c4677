"""The store's part in business hours, SLAs and the visible wait queue (issue 12): a small
role of its own, so it can be implemented per store next to the others.

The SLA clocks are recomputed from the conversation's stamps whenever the event log says
it changed (`sla_fire` reads the log from its own cursor), and warnings and breaches fire
with conditional updates inside the same transaction: whatever runs it, and however often,
each fires once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Event, NewEvent, priority_name
from gateway.store.base import WaitingConversation, WaitingGroup

# Routing order `sla`: (priority, sla_due, created_at, id) of the last one read.
SlaWaitingKey = tuple[int, float, float, str]
NO_DUE = 1e18

# Committed events after which a conversation's SLA clocks are computed again.
SLA_EVENTS = (
    "conversation.created",
    "conversation.reopened",
    "conversation.resolved",
    "conversation.transferred",
    "message.received",
    "message.queued",
)


@dataclass(slots=True)
class SlaFacts:
    """What the SLA clocks of one conversation read."""

    conversation_id: str
    queue: str
    priority: int
    status: str
    created_at: float
    resolved_at: float | None
    attributes: dict[str, Any]
    inbound: list[float]
    agent_replies: list[float]


@dataclass(slots=True)
class SlaPlan:
    """The clocks as computed (router/sla.py) with what is still to fire."""

    policy: str
    # target → {"due_at", "met_at", "paused", "remaining_seconds", "since"} (epoch seconds)
    targets: dict[str, dict[str, Any]]
    # (target, "warning" | "breached", at), not fired yet
    alarms: Sequence[tuple[str, str, float]]
    # the nearest due time of a running target (routing order), None: none
    nearest: float | None
    bump_priority: bool = False
    move_to: str | None = None


# The pure part, given by the core: (facts, what fired so far) → the plan (None: no policy).
SlaPlanner = Callable[[SlaFacts, dict[str, dict[str, Any]]], SlaPlan | None]


def sla_alarms(
    facts: SlaFacts, plan: SlaPlan, fired: dict[str, dict[str, Any]], now: float
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The warnings and breaches of `plan` due by `now` that have not fired yet, each as
    (kind, event data), marked in `fired` as it is handed out (a store persists `fired`
    with the events, in one transaction). The data reads `facts` as they are when handed
    out: a store applies a breach's actions (and updates `facts`) before taking the next."""
    for target, kind, at in plan.alarms:
        if at > now:
            continue
        mark = fired.setdefault(target, {})
        since = plan.targets.get(target, {}).get("since")
        if target == "next_response" and mark.get("since") != since:
            mark.clear()
        mark["since"] = since
        if kind in mark:
            continue  # fired already (a warning raced a breach in the same pass)
        mark[kind] = now
        if kind == "breached":
            mark.setdefault("warning", now)
        yield (
            kind,
            {
                "conversation_id": facts.conversation_id,
                "target": target,
                "policy": plan.policy,
                "due_at": plan.targets.get(target, {}).get("due_at"),
                "queue": facts.queue,
                "priority": priority_name(facts.priority),
            },
        )


def sla_next_at(plan: SlaPlan, now: float) -> float | None:
    """The earliest warning or breach of `plan` still ahead of `now` (the timer's next
    wake-up for the conversation), None: none."""
    later = [at for _, _, at in plan.alarms if at > now]
    return min(later) if later else None


def sla_event_conversation(data: dict[str, Any]) -> str | None:
    """The conversation an event of `SLA_EVENTS` is about."""
    cid = data.get("conversation_id") or (data.get("conversation") or {}).get("id")
    return str(cid) if cid else None


def sla_raise(plan: SlaPlan, facts: SlaFacts) -> int | None:
    """The priority a breach raises the conversation to (None: it does not)."""
    return facts.priority + 1 if plan.bump_priority and facts.priority < 3 else None


def sla_raised(facts: SlaFacts, priority: int) -> str:
    """Record a raise in `facts`; the action as the breach event tells it."""
    facts.priority = priority
    return f"priority raised to {priority_name(priority)}"


def sla_move(plan: SlaPlan, facts: SlaFacts) -> str | None:
    """The queue a breach moves the conversation to (None: it does not)."""
    return plan.move_to if plan.move_to and plan.move_to != facts.queue else None


def sla_moved(facts: SlaFacts, queue: str, new: list[NewEvent]) -> str:
    """Record a move in `facts` and its event in `new`; the action as the breach tells it."""
    new.append(
        NewEvent(
            "conversation.transferred",
            {
                "conversation_id": facts.conversation_id,
                "from_queue": facts.queue,
                "queue": queue,
                "by": "sla",
            },
        )
    )
    done = f"moved from queue {facts.queue} to {queue}"
    facts.queue = queue
    return done


@dataclass(slots=True)
class WaitingSeat:
    """A waiting conversation as the customer-facing wait queue sees it."""

    conversation_id: str
    queue: str
    position: int  # 1 = next
    contact_id: str
    channel: str  # the channel it last came through
    reply_kind: str | None
    reply_address: str | None
    created_at: float
    attributes: dict[str, Any] = field(default_factory=dict)
    # The customer's last message was sent by a machine (auto-reply, bounce): not answered.
    automated: bool = False


class TimeStore(ABC):
    @abstractmethod
    async def sla_next_due(self, now: float) -> float | None:
        """`now` when the event log holds changes not read yet; else the earliest warning or
        breach still to fire; None when nothing is pending."""

    @abstractmethod
    async def sla_fire(self, now: float, planner: SlaPlanner, batch: int = 1000) -> list[Event]:
        """Recompute the clocks of what changed, fire what fell due by `now` (once), apply
        breach actions; one transaction. Returns the committed events."""

    @abstractmethod
    async def sla_of(self, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The SLA of each conversation that has one: {"policy", "targets", "breached"}."""

    @abstractmethod
    async def waiting_page_sla(
        self, group: WaitingGroup, after: SlaWaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        """Like `waiting_page`, in the order highest priority, nearest SLA due, oldest."""

    @abstractmethod
    async def notice_once(self, conversation_id: str, kind: str, now: float) -> bool:
        """Record that `kind` was sent for the conversation; False when it was already."""

    @abstractmethod
    async def waiting_seats(self, channel_kinds: list[str], limit: int) -> list[WaitingSeat]:
        """Waiting conversations of those channel kinds with their position in their queue
        (routing order, across required skills), at most `limit`."""

    @abstractmethod
    async def noticed(self, conversation_ids: list[str], kind: str) -> set[str]:
        """Those of the conversations that got notice `kind` already."""
