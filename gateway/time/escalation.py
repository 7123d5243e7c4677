"""Time-driven routing (issue 12): the deadline sources for escalation steps, offer
timeouts, no-reply reassignment and the offline policy.

Each is a `DeadlineSource` (gateway/time/deadlines.py): `next_due` reads stamps from the store,
the pure router decides (router/policies.py), and `fire` commits through `Services` with
compare-and-set updates — so a kill -9 loses nothing, a restart fires what fell due while
down, and two processes fire each thing once. The routing config is read from the
gateway on every call, so a reload takes effect at the next deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.model import Conversation, priority_name
from gateway.services import Services
from gateway.store.base import Store, WaitStamp, WaitUpdate, escalation_store
from router import ConversationSnapshot, RoutingConfig, decide
from router.explain import candidate_lines
from router.policies import Routed, describe, due_at, escalate, no_reply_due, offline_due
from router.reasons import Reason, localize, localized_of

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("switchboard.timing")

# Stamps handled per store round trip.
BATCH = 500


def routing_uses_hints(routing: RoutingConfig) -> bool:
    """Whether routing must read per-conversation hints (offers pending, agents to skip,
    sticky agents): only when a feature that makes them is configured."""
    return (
        routing.sticky is not None
        or routing.no_reply is not None
        or routing.offline.policy == "requeue"
        or any(q.offers is not None or q.no_reply is not None for q in routing.queues)
    )


class EscalationTimer:
    """Applies escalation steps to conversations nobody has taken yet."""

    name = "escalation"
    wake_on = frozenset(
        {
            "conversation.created",
            "conversation.reopened",
            "conversation.transferred",
            "conversation.requeued",
        }
    )

    def __init__(
        self, store: Store, services: Services, routing: Callable[[], RoutingConfig]
    ) -> None:
        self.store = escalation_store(store)
        self.services = services
        self.routing = routing

    async def next_due(self, now: float) -> float | None:
        routing = self.routing()
        if routing.escalation is None and not any(r.escalation for r in routing.rules):
            return None  # no steps configured: the stamps wait (a reload reschedules them)
        return await self.store.waits_next_due()

    async def fire(self, now: float) -> None:
        for _ in range(20):  # at most 20 batches per wake-up; the loop comes back
            stamps = await self.store.wait_stamps(now, BATCH)
            if not stamps:
                return
            updates = [self.update(stamp, now) for stamp in stamps]
            await self.services.escalate(updates, now)
            if len(stamps) < BATCH:
                return

    def update(self, stamp: WaitStamp, now: float) -> WaitUpdate:
        """What to commit for one conversation: the steps that fell due, and the next."""
        idle = WaitUpdate(stamp.conversation_id, stamp.since, stamp.step, stamp.step, None)
        if not stamp.waiting:
            return idle
        source, esc = self.routing().escalation_for(stamp.rules)
        if esc is None:
            return idle
        before = Routed(stamp.queue, stamp.priority, stamp.required_skills)
        out = escalate(esc, before, stamp.since, stamp.step, now)
        update = WaitUpdate(stamp.conversation_id, stamp.since, stamp.step, out.step, out.next_due)
        if out.step == stamp.step:
            return update  # only scheduled
        applied = min(out.step, len(esc.steps))
        if applied > stamp.step:
            routed = out.routed
            update.queue, update.priority = routed.queue, routed.priority
            update.required_skills = dict(routed.skills)
            update.events.append(
                (
                    "conversation.escalated",
                    {
                        "conversation_id": stamp.conversation_id,
                        "rule": source,
                        "step": applied,
                        "of": len(esc.steps),
                        "changes": out.changes,
                        "changes_localized": localize(out.changes),
                        "queue": routed.queue,
                        "priority": priority_name(routed.priority),
                        "required_skills": routed.skills,
                        "waiting_since": stamp.since,
                        "next_at": out.next_due,
                        "after_last": esc.after_last if applied == len(esc.steps) else None,
                    },
                )
            )
        if out.exhausted:
            update.events.append(
                (
                    "conversation.escalation_exhausted",
                    {
                        "conversation_id": stamp.conversation_id,
                        "rule": source,
                        "steps": len(esc.steps),
                        "waiting_since": stamp.since,
                    },
                )
            )
        return update


async def escalation_of(
    store: Store, routing: RoutingConfig, conversation_id: str
) -> dict[str, Any] | None:
    """The conversation's escalation as the API shows it (None: it has no stamps)."""
    stamps = await escalation_store(store).wait_stamps(0.0, 1, conversation_id)
    if not stamps:
        return None
    stamp = stamps[0]
    source, esc = routing.escalation_for(stamp.rules)
    out = describe(esc, source, stamp.since, stamp.step)
    out["waiting"] = stamp.waiting
    out["waiting_since"] = stamp.since
    if not stamp.waiting:
        out["next_at"] = None
    elif esc is not None:
        out["next_at"] = due_at(esc, stamp.since, stamp.step)
    return out


async def explain_conversation(gw: Gateway, conv: Conversation) -> dict[str, Any]:
    """A conversation's routing as it stands: its queue, priority and skills now, its
    escalation step, and each agent of its queue with a score or an exclusion (agents it
    skips lately, its sticky agent), changing nothing."""
    routing = gw.config.routing
    now = gw.clock()
    hints = await escalation_store(gw.store).routing_hints(
        [conv.id], now, routing.skip_declined_for, routing.sticky.window if routing.sticky else None
    )
    hint = hints.get(conv.id)
    snap = await gw.store.routing_state()
    agents = gw.dispatcher.snapshots(snap, conv.channel_kind)
    waiting = ConversationSnapshot(
        conv.id,
        conv.queue,
        conv.priority,
        conv.required_skills,
        conv.channel_kind,
        conv.created_at,
        exclude=hint.exclude if hint else frozenset(),
        sticky=hint.sticky if hint else None,
    )
    queue = routing.queue(conv.queue)
    rr = snap.rr_last.get(conv.queue)
    decision: dict[str, Any] | None = None
    if queue is not None and conv.status == "open" and conv.assignee is None:
        if hint is not None and hint.offered:
            offered = [Reason("core.offered")]
            decision = {
                "agent": None,
                "strategy": None,
                "reasons": offered,
                "reasons_localized": localize(offered),
            }
        else:
            d = decide(waiting, queue, agents, rr, now)
            decision = {
                "agent": d.agent_id,
                "strategy": d.strategy,
                "reasons": d.reasons,
                "reasons_localized": localize(d.reasons),
            }
    return {
        "classification": {
            "queue": conv.queue,
            "priority": priority_name(conv.priority),
            "required_skills": conv.required_skills,
            "tags": conv.tags,
            "rule": conv.routing.get("rule"),
            "rules": conv.routing.get("rules") or [],
            "reasons": conv.routing.get("reasons", []),
            "reasons_localized": localized_of(conv.routing),
            "matches": [],
            "escalation": await escalation_of(gw.store, routing, conv.id),
        },
        "status": conv.status,
        "assignee": conv.assignee,
        "candidates": candidate_lines(waiting, queue.strategy, agents, rr, now) if queue else [],
        "decision": decision,
    }


class OfferTimeouts:
    """Expires offers nobody answered in time; the conversation goes to the next agent."""

    name = "offers"
    wake_on = frozenset({"offer.created"})

    def __init__(
        self, store: Store, services: Services, routing: Callable[[], RoutingConfig]
    ) -> None:
        self.store = escalation_store(store)
        self.services = services
        self.routing = routing

    async def next_due(self, now: float) -> float | None:
        return await self.store.offers_next_due()

    async def fire(self, now: float) -> None:
        away = frozenset(
            q.name
            for q in self.routing().queues
            if q.offers is not None and q.offers.away_on_timeout
        )
        await self.services.expire_offers(now, away)


class NoReplyTimer:
    """Requeues a conversation whose assignee has not answered the customer in time."""

    name = "no_reply"
    wake_on = frozenset({"message.received", "conversation.assigned", "message.queued"})

    def __init__(
        self, store: Store, services: Services, routing: Callable[[], RoutingConfig]
    ) -> None:
        self.store = escalation_store(store)
        self.services = services
        self.routing = routing

    def _enabled(self, routing: RoutingConfig) -> bool:
        return routing.no_reply is not None or any(q.no_reply for q in routing.queues)

    async def _due(self) -> list[tuple[float, Any]]:
        routing = self.routing()
        if not self._enabled(routing):
            return []
        out = []
        for stamp in await self.store.awaiting_reply():
            due = no_reply_due(
                routing.no_reply_for(stamp.queue),
                stamp.channel_kind,
                stamp.last_inbound_at,
                stamp.assigned_at,
            )
            if due is not None:
                out.append((due, stamp))
        return out

    async def next_due(self, now: float) -> float | None:
        return min((due for due, _ in await self._due()), default=None)

    async def fire(self, now: float) -> None:
        for due, stamp in await self._due():
            if due <= now:
                await self.services.requeue(
                    stamp.conversation_id,
                    stamp.agent_id,
                    "no_reply",
                    now,
                    expect_last_inbound_at=stamp.last_inbound_at,
                )


class OfflineTimer:
    """Requeues the conversations of an agent offline for longer than the grace period
    (`routing.offline.policy: requeue`)."""

    name = "offline"
    wake_on = frozenset({"agent.presence", "conversation.assigned"})

    def __init__(
        self, store: Store, services: Services, routing: Callable[[], RoutingConfig]
    ) -> None:
        self.store = escalation_store(store)
        self.services = services
        self.routing = routing

    async def _due(self) -> list[tuple[float, str, float]]:
        policy = self.routing().offline
        if policy.policy == "keep":
            return []
        out = []
        for agent, since in await self.store.offline_agents():
            due = offline_due(policy, since)
            if due is not None:
                out.append((due, agent, since))
        return out

    async def next_due(self, now: float) -> float | None:
        return min((due for due, _, _ in await self._due()), default=None)

    async def fire(self, now: float) -> None:
        for due, agent, since in await self._due():
            if due <= now:
                events = await self.services.requeue(
                    None, agent, "offline", now, expect_offline_since=since
                )
                if events:
                    log.info(
                        "conversations of an offline agent requeued",
                        extra={"agent": agent, "count": len(events)},
                    )
