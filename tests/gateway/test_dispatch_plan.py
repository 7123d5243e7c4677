"""The dispatcher, paging the backlog out of the store group by group, assigns exactly
what the explaining reference planner (`router.plan`) decides on the whole snapshot."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from connectors.base import Identity, InboundMessage
from gateway import dispatch
from gateway.config import load_config_text
from gateway.dispatch import Dispatcher
from gateway.events import EventBus
from gateway.store.base import IngestRequest
from gateway.store.sqlite import SqliteStore
from router import Classification, ConversationSnapshot, plan

QUEUES = {
    "general": "round_robin",
    "billing": "skills",
    "tech": "least_busy",
    "vip": "longest_idle",
}
NOW = 50_000.0


def config(db: Path, rng: random.Random) -> str:
    lines = [
        f"store: {{path: '{db}'}}",
        "channels: [{name: api, type: api, inbound_token: test-dispatch-plan-token}]",
        "routing:",
        "  queues: [" + ", ".join(f"{{name: {q}, strategy: {s}}}" for q, s in QUEUES.items()) + "]",
        "  default: {queue: general}",
        "agents:",
    ]
    for i in range(8):
        queues = ", ".join(rng.sample(list(QUEUES), rng.randint(1, 3)))
        skills = ", ".join(
            f"{s}: {rng.randint(1, 10)}" for s in rng.sample(["billing", "de", "tech"], 2)
        )
        lines.append(
            f"  - {{id: a{i}, name: A{i}, queues: [{queues}], skills: {{{skills}}},"
            f" capacity: {{default: {rng.randint(0, 5)}}}, presence: online}}"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(12))
async def test_a_paged_pass_assigns_what_plan_decides(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages, so that every group is read in several.
    monkeypatch.setattr(dispatch, "PAGE_SIZE", 3)
    monkeypatch.setattr(dispatch, "HEAD_SIZE", 2)
    rng = random.Random(seed)
    db = tmp_path / "d.db"
    cfg = load_config_text(config(db, rng)).config
    store = SqliteStore(db)
    await store.open()
    try:
        await store.sync_agents(
            [
                (a.id, rng.choice(["online", "online", "away"]), {"default": a.capacity_for("x")})
                for a in cfg.agents
            ]
        )
        for i in range(rng.randint(20, 80)):
            queue = rng.choice(list(QUEUES))
            skills = rng.choice([{}, {}, {"billing": rng.randint(1, 9)}, {"de": 2, "tech": 3}])
            priority = rng.randint(0, 3)
            await store.ingest(
                IngestRequest(
                    "api",
                    rng.choice(["email", "email", "sms"]),
                    InboundMessage(f"m{i}", Identity("api", f"c{i}"), "hello"),
                    lambda attrs, q=queue, p=priority, s=skills: Classification(
                        q,
                        p,
                        s,
                        [],
                        None,
                        [],  # type: ignore[arg-type]
                    ),
                    float(rng.randint(0, 30)),
                    3600,
                )
            )
        snap = await store.routing_snapshot()
        reference = Dispatcher(store, EventBus(), cfg, lambda: NOW)
        expected: dict[str, str] = {}
        for kind in {w.channel_kind for w in snap.waiting}:
            waiting = [
                ConversationSnapshot(
                    w.id, w.queue, w.priority, w.required_skills, w.channel_kind, w.created_at
                )
                for w in snap.waiting
                if w.channel_kind == kind
            ]
            agents = reference.snapshots(snap, kind)
            queues = {q.name: q for q in cfg.routing.queues}
            for d in plan(waiting, queues, agents, snap.rr_last, NOW):
                if d.agent_id is not None:
                    expected[d.conversation_id] = d.agent_id
        last = await store.last_event_id()
        assert await Dispatcher(store, EventBus(), cfg, lambda: NOW).run_pass() is False
        assigned = {
            e.data["conversation_id"]: e.data["agent"]
            for e in await store.events_since(last, 100_000)
            if e.type == "conversation.assigned"
        }
        assert assigned == expected
    finally:
        await store.close()
