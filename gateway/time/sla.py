"""Business hours and SLAs in the running gateway: the timer sources (gateway/time/deadlines.py)
and the bridge from the store's facts to the pure rules (router/sla.py, router/schedule.py).

- `SlaSource`: the SLA clocks. Its next due time is read from the store (`sla_next_due`):
  now when the event log holds changes the clocks have not read, else the earliest warning
  or breach still to fire. `fire` recomputes and fires in one transaction with conditional
  updates (gateway/store/sqlite/timekeeping.py), through the one commit path.
- `OpeningSource`: conversations parked in a closed queue are routed when it opens: its
  next due time is the next opening of a closed queue that has conversations waiting,
  computed from the configuration and the store (a restart routes whatever is open anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.clock import iso
from gateway.model import priority_name
from gateway.services import Services
from gateway.store.base import Store
from gateway.store.timekeeping import SLA_EVENTS, SlaFacts, SlaPlan, SlaPlanner, TimeStore
from router import RoutingConfig
from router.schedule import calendar, next_change, queue_open
from router.sla import Timeline, alarms, choose_policy, compute

log = logging.getLogger("switchboard.sla")


def sla_planner(routing: RoutingConfig) -> SlaPlanner:
    """The pure SLA rules as the store calls them."""

    def plan(facts: SlaFacts, fired: dict[str, dict[str, Any]]) -> SlaPlan | None:
        cfg = routing.sla
        if cfg is None:
            return None
        policy = choose_policy(cfg, priority_name(facts.priority), facts.queue, facts.attributes)
        if policy is None:
            return None
        due = compute(
            policy,
            calendar(routing, facts.queue),
            Timeline(facts.created_at, facts.inbound, facts.agent_replies, facts.resolved_at),
        )
        targets = {
            name: {
                "due_at": t.due,
                "met_at": t.met_at,
                "paused": t.due is None and t.met_at is None and t.remaining is not None,
                "remaining_seconds": t.remaining,
                "since": t.since,
            }
            for name, t in due.targets.items()
        }
        running = due.open_dues()
        return SlaPlan(
            policy.name,
            targets,
            alarms(due, fired, cfg.warning),
            min(running.values()) if running else None,
            policy.on_breach.bump_priority,
            policy.on_breach.move_to,
        )

    return plan


def sla_json(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A conversation's SLA as the API shows it."""
    if row is None:
        return None
    out: dict[str, Any] = {"policy": row["policy"]}
    fired = row.get("fired", {})
    for name, t in row["targets"].items():
        done = fired.get(name, {})
        if name == "next_response" and done.get("since") != t.get("since"):
            done = {}
        out[name] = {
            "due_at": iso(t.get("due_at")),
            "met_at": iso(t.get("met_at")),
            "paused": bool(t.get("paused")),
            "remaining_seconds": t.get("remaining_seconds"),
            "warned_at": iso(done.get("warning")),
            "breached_at": iso(done.get("breached")),
        }
    return out


class SlaSource:
    """The SLA clocks as a deadline source."""

    name = "sla"
    wake_on = frozenset(SLA_EVENTS)

    def __init__(self, store: TimeStore, services: Services, routing: RoutingConfig) -> None:
        self.store = store
        self.services = services
        self.planner = sla_planner(routing)

    async def next_due(self, now: float) -> float | None:
        return await self.store.sla_next_due(now)

    async def fire(self, now: float) -> None:
        events = await self.services.sla_fire(self.store, now, self.planner)
        for event in events:
            if event.type in ("sla.warning", "sla.breached"):
                log.info(
                    event.type,
                    extra={
                        "conversation": event.data.get("conversation_id"),
                        "target": event.data.get("target"),
                        "policy": event.data.get("policy"),
                    },
                )


class OpeningSource:
    """Wake routing when a closed queue with waiting conversations opens."""

    name = "opening"
    wake_on = frozenset({"conversation.created", "conversation.transferred"})

    def __init__(
        self, store: Store, routing: RoutingConfig, wake_routing: Callable[[], None]
    ) -> None:
        self.store = store
        self.routing = routing
        self.wake_routing = wake_routing
        # The opening looked for; routing needs no memory of it: every start routes anyway.
        self._opening: float | None = None

    async def next_due(self, now: float) -> float | None:
        if not self.routing.hours:
            return None
        if self._opening is not None and self._opening <= now:
            return self._opening
        state = await self.store.routing_state()
        closed = {
            g.queue for g in state.waiting_groups if not queue_open(self.routing, g.queue, now)
        }
        self._opening = next_change(self.routing, closed, now)
        return self._opening

    async def fire(self, now: float) -> None:
        log.info("a closed queue opened: routing what waited")
        self._opening = None
        self.wake_routing()
