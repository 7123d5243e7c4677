"""A concurrency storm: hundreds of messages at once while agents flip presence and resolve,
and an admin changes their capacity.

Afterwards the durable event log is replayed to check what a support lead would check:
no conversation assigned twice, no agent ever over the capacity it had at that instant,
and every waiting conversation assigned once capacity allows.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from gateway.dispatch import Dispatcher
from gateway.model import Event
from gateway.store.base import Claim
from tests.gateway.conftest import base_config, wait_for

AGENTS = {"alice": 3, "bob": 2, "carol": 1}


def replay(events: list[dict[str, Any]]) -> None:
    assignee: dict[str, str | None] = {}
    load = dict.fromkeys(AGENTS, 0)
    capacity = dict(AGENTS)
    for e in events:
        d = e["data"]
        if e["type"] == "agent.capacity":
            # The storm's conversations come through the `api` channel.
            capacity[d["agent"]] = d["capacity"].get("api", d["capacity"].get("default", 0))
        elif e["type"] == "conversation.created":
            assignee[d["conversation"]["id"]] = None
        elif e["type"] == "conversation.assigned":
            cid = d["conversation_id"]
            assert assignee[cid] is None, (
                f"{cid} assigned twice (to {assignee[cid]} and {d['agent']})"
            )
            assignee[cid] = d["agent"]
            load[d["agent"]] += 1
            assert load[d["agent"]] <= capacity[d["agent"]], (
                f"{d['agent']} over capacity at event {e['id']}:"
                f" load {load[d['agent']]}/{capacity[d['agent']]}"
            )
        elif e["type"] in ("conversation.resolved", "conversation.transferred"):
            cid = d["conversation_id"]
            if assignee[cid] is not None:
                load[assignee[cid]] -= 1
            assignee[cid] = None


async def test_storm(gateway_factory: Any, tmp_path: Any) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    for agent in cfg["agents"]:
        agent["capacity"] = {"default": AGENTS[agent["id"]]}
        agent["queues"] = ["general", "billing"]
    gw, client = await gateway_factory(cfg)
    rng = random.Random(7)
    stop = asyncio.Event()

    async def flip_presence() -> None:
        while not stop.is_set():
            agent = rng.choice(list(AGENTS))
            await client.call(
                "PUT",
                f"/v1/agents/{agent}/presence",
                json={"status": rng.choice(["online", "away", "online"])},
            )
            await asyncio.sleep(0.005)

    async def resolve_some() -> None:
        while not stop.is_set():
            _, page = await client.call("GET", "/v1/conversations?status=assigned&limit=20")
            for conv in page["conversations"][: rng.randint(0, 3)]:
                await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
            await asyncio.sleep(0.01)

    async def transfer_some() -> None:
        while not stop.is_set():
            _, page = await client.call("GET", "/v1/conversations?status=assigned&limit=5")
            for conv in page["conversations"][:1]:
                await client.call(
                    "POST", f"/v1/conversations/{conv['id']}/transfer", json={"queue": "general"}
                )
            await asyncio.sleep(0.03)

    async def change_capacity() -> None:
        while not stop.is_set():
            agent = rng.choice(list(AGENTS))
            await client.call(
                "PUT",
                f"/v1/agents/{agent}/capacity",
                json={"capacity": {"default": rng.randint(0, AGENTS[agent] + 1)}},
            )
            await asyncio.sleep(0.01)

    # An admin lowers an agent's capacity between a routing plan and its claim: the
    # hook makes the race the capacity changes above hit by chance happen every time.
    real_claim = gw.store.claim
    squeezes = 0

    async def claim_after_capacity_drop(
        claims: list[Claim], now: float
    ) -> tuple[list[str], list[Event]]:
        nonlocal squeezes
        if claims and squeezes < 25 and not stop.is_set():
            squeezes += 1
            agent = claims[0].agent_id
            snap = await gw.store.routing_snapshot()
            load = snap.loads.get((agent, claims[0].channel_kind), 0)
            gw.publish(await gw.store.set_capacity(agent, {"default": load}, time.time()))
        return await real_claim(claims, now)

    gw.store.claim = claim_after_capacity_drop  # type: ignore[method-assign]

    # A second dispatcher on the same store races the first one, as a second gateway
    # instance would: only the store's atomic claim keeps them from double-booking.
    rival = Dispatcher(gw.store, gw.bus, gw.config, time.time, safety_interval=0.001)
    await rival.start()
    chaos = [
        asyncio.create_task(f())
        for f in (flip_presence, flip_presence, resolve_some, transfer_some, change_capacity)
    ]
    results = await asyncio.gather(
        *(
            client.inbound(f"s{i}", "refund" if i % 3 == 0 else "hello", sender=f"cust-{i}")
            for i in range(400)
        )
    )
    assert all(status == 202 for status, _ in results)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*chaos)
    await rival.stop()
    assert squeezes > 0

    # Everyone online, capacity back: every waiting conversation must now be assigned.
    for agent, n in AGENTS.items():
        await client.call("PUT", f"/v1/agents/{agent}/presence", json={"status": "online"})
        await client.call("PUT", f"/v1/agents/{agent}/capacity", json={"capacity": {"default": n}})

    # Resolve until the backlog drains; each resolve frees capacity that must be reused.
    async def drained() -> bool:
        _, page = await client.call("GET", "/v1/conversations?status=open&limit=500")
        waiting = page["conversations"]
        _, assigned = await client.call("GET", "/v1/conversations?status=assigned&limit=500")
        for conv in assigned["conversations"]:
            await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
        return not waiting and not assigned["conversations"]

    await wait_for(drained, timeout=60, interval=0.05)
    events = [e.to_api() for e in await gw.store.events_since(0, 1_000_000)]
    assert sum(e["type"] == "conversation.created" for e in events) == 400
    replay(events)
    _, resolved = await client.call("GET", "/v1/conversations?status=resolved&limit=500")
    assert len(resolved["conversations"]) == 400
