"""Business hours applied to queues (pure): which calendar a queue keeps, whether it is
open, and where a new conversation goes while its queue is closed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import RoutingConfig
from .hours import Calendar, is_open, next_close, next_open
from .reasons import Reason
from .sla import Timeline, choose_policy, compute


def calendar(routing: RoutingConfig, queue: str) -> Calendar | None:
    """The queue's compiled calendar (None: always open), cached on the config."""
    cache: dict[str, Calendar | None] | None = routing._calendars
    if cache is None:
        compiled = {name: Calendar.of(cfg) for name, cfg in routing.hours.items()}
        cache = {}
        for q in routing.queues:
            name = q.hours or routing.default_hours
            cache[q.name] = None if name is None else compiled[name]
        routing._calendars = cache
    return cache.get(queue)


def queue_open(routing: RoutingConfig, queue: str, now: float) -> bool:
    return is_open(calendar(routing, queue), now)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new conversation waits: `queue`, whether it is closed now (`closed`: park
    until `opens_at`), whether to send the closed notice, and why."""

    queue: str
    closed: bool
    opens_at: float | None
    reply: bool
    reason: Reason | None


def place(routing: RoutingConfig, queue: str, now: float) -> Placement:
    """Apply the queue's out-of-hours policy to a conversation arriving at `now`."""
    cal = calendar(routing, queue)
    if is_open(cal, now):
        return Placement(queue, False, None, False, None)
    cfg = routing.queue(queue)
    policy = cfg.out_of_hours if cfg is not None else None
    reply = policy is not None and policy.reply
    if policy is not None and policy.action == "overflow" and policy.overflow:
        other = calendar(routing, policy.overflow)
        if is_open(other, now):
            return Placement(
                policy.overflow,
                False,
                None,
                False,
                Reason("hours.overflow", queue=repr(queue), other=repr(policy.overflow)),
            )
    opens = next_open(cal, now)
    return Placement(
        queue,
        True,
        opens,
        reply,
        Reason("hours.waits", queue=repr(queue)),
    )


def next_change(routing: RoutingConfig, queues: set[str], now: float) -> float | None:
    """The next opening of any of `queues` that is closed at `now` (the dispatcher routes
    what waited for it then)."""
    out: float | None = None
    for name in queues:
        cal = calendar(routing, name)
        if cal is None or is_open(cal, now):
            continue
        opens = next_open(cal, now)
        if opens is not None and (out is None or opens < out):
            out = opens
    return out


def time_facts(
    routing: RoutingConfig, queue: str, priority: str, attributes: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """What time means for a conversation arriving at `now` in `queue` (for explain and
    `switchboard route`): the queue's hours and where it would wait, and the SLA policy
    with each target's due time (epoch seconds; None: not counted yet)."""
    q = routing.queue(queue)
    cal = calendar(routing, queue)
    placed = place(routing, queue, now)
    hours: dict[str, Any] = {
        "calendar": (q.hours if q is not None and q.hours else routing.default_hours),
        "open": is_open(cal, now),
        "opens_at": None if is_open(cal, now) else next_open(cal, now),
        "closes_at": next_close(cal, now) if is_open(cal, now) else None,
        "placement": placed.reason,
    }
    sla: dict[str, Any] | None = None
    if routing.sla is not None:
        policy = choose_policy(routing.sla, priority, placed.queue, attributes)
        if policy is not None:
            due = compute(policy, calendar(routing, placed.queue), Timeline(now, [now], []))
            sla = {
                "policy": policy.name,
                "due": {name: t.due for name, t in due.targets.items()},
            }
    return {"hours": hours, "sla": sla}
