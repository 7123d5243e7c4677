"""Routing dispatch: turn the router's pure plan into atomic claims in the store.

One pass reads a snapshot (waiting conversations, agents with presence, load and last
assignment), asks `router.plan` for decisions, and claims them; the store's
compare-and-set refuses any claim the world has moved past, and the pass runs again.
Passes are serialised and coalesced: a poke during a pass schedules exactly one more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from gateway.config import GatewayConfig
from gateway.events import EventBus
from gateway.metrics import METRICS
from gateway.store.base import Claim, RoutingSnapshot, Store
from router import AgentSnapshot, ConversationSnapshot, Decision, plan

log = logging.getLogger("switchboard.dispatch")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        config: GatewayConfig,
        clock: Callable[[], float],
        safety_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.config = config
        self.clock = clock
        self.safety_interval = safety_interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._queues = {q.name: q for q in config.routing.queues}
        self._agents = {a.id: a for a in config.agents}

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
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                log.warning("dispatcher did not stop; abandoned")

    async def _loop(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when it is
            # cancelled just as the wake arrives, and the cancellation is lost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.safety_interval):
                    await self._wake.wait()
            if self._stopping:
                break
            self._wake.clear()
            try:
                retry = await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing pass failed")
                await asyncio.sleep(1.0)
                retry = True
            if retry:
                self._wake.set()

    def snapshots(self, snap: RoutingSnapshot, channel_kind: str) -> list[AgentSnapshot]:
        out = []
        for state in snap.agents:
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
                    load=snap.loads.get((state.id, channel_kind), 0),
                    last_assigned_at=state.last_assigned_at,
                )
            )
        return out

    def decisions(self, snap: RoutingSnapshot, now: float) -> list[tuple[Decision, str, int]]:
        """The plan for a snapshot: (decision, channel kind, capacity) per waiting conversation."""
        by_kind: dict[str, list[ConversationSnapshot]] = defaultdict(list)
        for w in snap.waiting:
            by_kind[w.channel_kind].append(
                ConversationSnapshot(
                    w.id, w.queue, w.priority, w.required_skills, w.channel_kind, w.created_at
                )
            )
        out = []
        for kind, waiting in by_kind.items():
            agents = self.snapshots(snap, kind)
            capacity = {a.id: a.capacity for a in agents}
            for d in plan(waiting, self._queues, agents, snap.rr_last, now):
                out.append((d, kind, capacity.get(d.agent_id or "", 0)))
        return out

    async def run_pass(self) -> bool:
        """One routing pass; True when a claim lost a race and another pass is due."""
        snap = await self.store.routing_snapshot()
        METRICS.waiting.set(len(snap.waiting))
        if not snap.waiting:
            return False
        now = self.clock()
        claims = [
            Claim(d.conversation_id, d.agent_id, kind, cap, d.queue, d.strategy or "", d.reasons)
            for d, kind, cap in self.decisions(snap, now)
            if d.agent_id is not None
        ]
        if not claims:
            return False
        claimed, events = await self.store.claim(claims, now)
        self.bus.publish(events)
        for claim in claims:
            if claim.conversation_id in claimed:
                METRICS.assignments.labels(claim.queue).inc()
        METRICS.waiting.set(len(snap.waiting) - len(claimed))
        if not claimed:
            await asyncio.sleep(0.05)  # lost every race: let the winners' changes land
        return len(claimed) < len(claims)
