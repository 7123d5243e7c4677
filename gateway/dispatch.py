"""Routing dispatch: turn the router's decisions into atomic claims in the store.

A pass costs what the free capacity can take, not what waits:

1. It reads the agents, their loads and which groups (channel kind, queue, required
   skills) have waiting conversations — never the waiting conversations themselves. With no agent under
   capacity in any of those queues (the backlog case) the pass ends there.
2. For each kind, `router.Planner` indexes the agents with free capacity. Waiting
   conversations are grouped by queue and required skills (the store keeps them in that
   order); only the groups some free agent can take are read, a page at a time per group,
   most urgent and oldest first, merged in routing order, and decided one by one until no
   free agent can take any of them (or nothing more waits). A backlog that needs a skill
   nobody free has is never read.
3. Decisions are claimed in slices; the loop yields between slices so a pass never holds
   the event loop for long (`SLICE_SECONDS` of planning at a time). The store's
   compare-and-set refuses a claim the world has moved past (assigned elsewhere, agent
   away, capacity lowered), and then the pass is run again on fresh state.

So a new conversation is matched against the agents with free capacity in its queue, and
capacity that frees up is matched against the oldest, most urgent conversations of the
queues of the agents that have it. Passes are serialised and coalesced: a poke during a
pass schedules exactly one more; a safety pass runs every `safety_interval` anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.config import GatewayConfig
from gateway.eventloop import stop_tasks
from gateway.events import EventBus
from gateway.metrics import METRICS
from gateway.model import AgentState
from gateway.services import Services
from gateway.store.base import (
    Claim,
    RoutingHint,
    RoutingSnapshot,
    RoutingState,
    Store,
    WaitingConversation,
    WaitingGroup,
    WaitingKey,
    escalation_store,
)
from gateway.store.timekeeping import SlaWaitingKey, TimeStore
from gateway.time.escalation import routing_uses_hints
from router import AgentSnapshot, ConversationSnapshot, Planner
from router.schedule import queue_open

log = logging.getLogger("switchboard.dispatch")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        config: GatewayConfig,
        clock: Callable[[], float],
        safety_interval: float = 5.0,
        services: Services | None = None,
    ) -> None:
        self.store = store
        # Claims commit through the one commit path (the gateway's, else one on `bus`).
        self.services = services or Services(store, bus, clock)
        self.config = config
        self.clock = clock
        self.safety_interval = safety_interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Route by `config` from the next pass on (a reload swaps it whole)."""
        self.config = config
        self._queues = {q.name: q for q in config.routing.queues}
        self._agents = {a.id: a for a in config.agents}
        # Issue 12: the routing order `sla` pages by nearest SLA due (a store with that role).
        self._sla_order = (
            self.store
            if config.routing.order == "sla" and isinstance(self.store, TimeStore)
            else None
        )
        self._hinting = routing_uses_hints(config.routing)

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="dispatcher")
        self.poke()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop routing. The loop ends on its flag as well as on the cancellation (which
        Python 3.11 can lose), and is waited for at most `timeout` seconds."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        await stop_tasks([task] if task else [], timeout, "dispatcher")

    async def _loop(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when it is
            # cancelled just as the wake arrives, and the cancellation is lost.
            safety = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.safety_interval):
                    await self._wake.wait()
                    safety = False
            if self._stopping:
                break
            self._wake.clear()
            try:
                retry = await self.run_pass(count_waiting=safety)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing pass failed")
                await asyncio.sleep(1.0)
                retry = True
            if retry:
                self._wake.set()

    def snapshots(
        self, snap: RoutingSnapshot | RoutingState, channel_kind: str
    ) -> list[AgentSnapshot]:
        """The agents as the router sees them for one channel kind."""
        return self._agent_snapshots(snap.agents, snap.loads, channel_kind)

    def _agent_snapshots(
        self, agents: Iterable[AgentState], loads: dict[tuple[str, str], int], channel_kind: str
    ) -> list[AgentSnapshot]:
        out = []
        for state in agents:
            cfg = self._agents.get(state.id)
            if cfg is None:
                continue  # an agent removed from the config keeps its history, gets no work
            out.append(
                AgentSnapshot(
                    id=state.id,
                    name=cfg.name,
                    presence=state.presence,  # type: ignore[arg-type]
                    queues=frozenset(cfg.queues),
                    skills=cfg.skills,
                    capacity=state.capacity_for(channel_kind),
                    load=loads.get((state.id, channel_kind), 0),
                    last_assigned_at=state.last_assigned_at,
                )
            )
        return out

    async def run_pass(self, count_waiting: bool = False) -> bool:
        """One routing pass; True when a claim lost a race and another pass is due."""
        # (With the order `sla` the heads, in priority order, would not be used.)
        head = 0 if self._sla_order is not None else HEAD_SIZE
        state = await self.store.routing_state(count_waiting, head)
        if state.waiting_count is not None:
            METRICS.waiting.set(state.waiting_count)
        if not state.waiting_groups:
            METRICS.waiting.set(0)
            return False
        now = self.clock()
        by_kind: dict[str, list[WaitingGroup]] = defaultdict(list)
        for group in state.waiting_groups:
            by_kind[group.channel_kind].append(group)
        for kind, groups in by_kind.items():
            agents = self._agent_snapshots(state.agents, state.loads, kind)
            planner = Planner(self._queues, agents, state.rr_last, now)
            # A closed queue's conversations wait for its opening (router/schedule.py).
            live = [
                g
                for g in groups
                if planner.can_take(g.queue, g.required_skills)
                and queue_open(self.config.routing, g.queue, now)
            ]
            if live and await self._route(kind, live, planner, now, state.heads):
                return True
        return False

    async def _route(
        self,
        kind: str,
        groups: list[WaitingGroup],
        planner: Planner,
        now: float,
        heads: dict[WaitingGroup, list[WaitingConversation]],
    ) -> bool:
        """Decide and claim the waiting conversations of `groups` while some free agent can
        take them; True when a claim was refused (the state moved on)."""
        streams = {g: _Stream.starting_with(heads.get(g)) for g in groups}
        # Offers pending, agents to skip, sticky agents (issue 12): read per page.
        hints: dict[str, RoutingHint] = {}
        if self._hinting:
            hints = await self._hints([w.id for g in groups for w in heads.get(g, [])], now)
        claims: list[Claim] = []
        capacity = {a.id: a.capacity for a in planner.agents.values()}
        slice_started = time.perf_counter()
        while True:
            for group in list(streams):
                stream = streams[group]
                if not planner.can_take(group.queue, group.required_skills):
                    del streams[group]
                    continue
                if not stream.buf and not stream.done:
                    if self._sla_order is not None:
                        page = await self._sla_order.waiting_page_sla(
                            group, stream.after_sla, PAGE_SIZE
                        )
                    else:
                        page = await self.store.waiting_page(group, stream.after, PAGE_SIZE)
                    if self._hinting:
                        hints.update(await self._hints([w.id for w in page], now))
                    stream.buf.extend(page)
                    stream.done = len(page) < PAGE_SIZE
                    if page:
                        last = page[-1]
                        stream.after = (last.priority, last.created_at, last.id)
                        stream.after_sla = (last.priority, last.sla_due, last.created_at, last.id)
                    slice_started = time.perf_counter()  # the page read yielded
                if not stream.buf:
                    del streams[group]
            if not streams:
                break
            order = _order_sla if self._sla_order is not None else _order
            group = min(streams, key=lambda g: order(streams[g].buf[0]))
            w = streams[group].buf.popleft()
            hint = hints.get(w.id)
            if hint is not None and hint.offered:
                continue  # offered to an agent: it waits for the answer
            decision = planner.assign(
                ConversationSnapshot(
                    w.id,
                    w.queue,
                    w.priority,
                    w.required_skills,
                    w.channel_kind,
                    w.created_at,
                    sla_due=w.sla_due,
                    exclude=hint.exclude if hint is not None else frozenset(),
                    sticky=hint.sticky if hint is not None else None,
                )
            )
            if decision is not None and decision.agent_id is not None:
                claims.append(
                    Claim(
                        decision.conversation_id,
                        decision.agent_id,
                        kind,
                        capacity.get(decision.agent_id, 0),
                        decision.queue,
                        decision.strategy or "",
                        decision.reasons,
                    )
                )
            if len(claims) >= CLAIM_SLICE or time.perf_counter() - slice_started > SLICE_SECONDS:
                if claims:
                    if await self._claim(claims, now):
                        return True
                    claims = []
                else:
                    await asyncio.sleep(0)
                slice_started = time.perf_counter()
        return bool(claims) and await self._claim(claims, now)

    async def _hints(self, ids: list[str], now: float) -> dict[str, RoutingHint]:
        if not ids:
            return {}
        routing = self.config.routing
        return await escalation_store(self.store).routing_hints(
            ids, now, routing.skip_declined_for, routing.sticky.window if routing.sticky else None
        )

    async def _claim(self, claims: list[Claim], now: float) -> bool:
        """Claim a slice of decisions; True when some claim was refused. Decisions in a
        queue that offers this channel kind become offers instead (issue 12)."""
        routing = self.config.routing
        offers: list[tuple[Claim, float]] = []
        direct: list[Claim] = []
        for claim in claims:
            policy = routing.offers_for(claim.queue, claim.channel_kind)
            if policy is None:
                direct.append(claim)
            else:
                offers.append((claim, now + policy.timeout))
        claimed = await self.services.claim(direct, now) if direct else []
        if offers:
            claimed = [*claimed, *await self.services.offer(offers, now)]
        done = set(claimed)
        for claim in claims:
            if claim.conversation_id in done:
                METRICS.assignments.labels(claim.queue).inc()
        METRICS.waiting.dec(len(claimed))
        if not claimed:
            await asyncio.sleep(0.05)  # lost every race: let the winners' changes land
        return len(claimed) < len(claims)


# Waiting conversations read per page.
PAGE_SIZE = 256
# Claims committed at once: the store thread encodes their events while holding the GIL,
# which the event loop then waits for, so a slice is kept small.
CLAIM_SLICE = 64
# Waiting conversations of each group read with the routing state: most passes (a new
# conversation, one freed slot) need nothing more, so they cost two store calls.
HEAD_SIZE = 16
# Planning on the event loop between two awaits, at most (a decision is ~10-50 µs).
SLICE_SECONDS = 0.005


def _order(w: WaitingConversation) -> tuple[int, float, str]:
    """Routing order: highest priority, then oldest, then id (as `router.order_waiting`)."""
    return (-w.priority, w.created_at, w.id)


def _order_sla(w: WaitingConversation) -> tuple[int, float, float, str]:
    """Routing order `sla`: highest priority, nearest SLA due, then oldest, then id."""
    return (-w.priority, w.sla_due, w.created_at, w.id)


@dataclass
class _Stream:
    """One queue's waiting conversations, read a page at a time."""

    buf: deque[WaitingConversation] = field(default_factory=deque)
    after: WaitingKey | None = None
    done: bool = False
    after_sla: SlaWaitingKey | None = None

    @classmethod
    def starting_with(cls, head: list[WaitingConversation] | None) -> _Stream:
        """A stream whose first page (`HEAD_SIZE` long at most) was read already."""
        if head is None:
            return cls()
        last = head[-1] if head else None
        return cls(
            deque(head),
            None if last is None else (last.priority, last.created_at, last.id),
            len(head) < HEAD_SIZE,
        )
