"""Routing under backlog: a pass costs what the free capacity can take, not what waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.dispatch import HEAD_SIZE, PAGE_SIZE, Dispatcher
from gateway.store.base import RoutingState, WaitingConversation, WaitingGroup, WaitingKey
from tests.gateway.conftest import base_config


async def test_a_backlog_costs_nothing_while_every_agent_is_full(
    gateway_factory: Any, tmp_path: Any
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    for agent in cfg["agents"]:
        agent["capacity"] = {"default": 0}
    # Bob serves billing too, but lacks the billing skill its conversations require.
    cfg["agents"][1]["queues"] = ["general", "billing"]
    gw, client = await gateway_factory(cfg)
    await gw.dispatcher.stop()  # this test runs the passes itself
    results = await asyncio.gather(
        *(
            client.inbound(f"b{i}", "refund" if i % 4 == 0 else "hello", sender=f"cust-{i}")
            for i in range(2 * PAGE_SIZE)
        )
    )
    assert all(status == 202 for status, _ in results)

    # What a pass reads of the backlog: the few first of each group that come with the
    # routing state, and the pages it asks for.
    heads: list[int] = []
    pages: list[int] = []
    real_state, real_page = gw.store.routing_state, gw.store.waiting_page

    async def counting_state(count_waiting: bool = False, head: int = 0) -> RoutingState:
        state = await real_state(count_waiting, head)
        heads.append(sum(len(h) for h in state.heads.values()))
        return state

    async def counting_page(
        group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        page = await real_page(group, after, limit)
        pages.append(len(page))
        return page

    gw.store.routing_state = counting_state  # type: ignore[method-assign]
    gw.store.waiting_page = counting_page  # type: ignore[method-assign]
    dispatcher = Dispatcher(gw.store, gw.bus, gw.config, time.time)
    assert await dispatcher.run_pass() is False
    # Nobody can take one: 2 groups (general; billing needing billing>=5) of 512 waiting,
    # and the pass read the first few of each, nothing more.
    assert heads == [2 * HEAD_SIZE] and pages == []

    # Bob gets room for 40: the 40 oldest general conversations are his, and the pass
    # reads one page of general (of 384 waiting there), nothing of the billing backlog
    # that he cannot take.
    await client.call("PUT", "/v1/agents/bob/capacity", json={"capacity": {"default": 40}})
    assert await dispatcher.run_pass() is False
    assert pages == [PAGE_SIZE]
    _, page = await client.call("GET", "/v1/conversations?assignee=bob&limit=100")
    mine = sorted(c["id"] for c in page["conversations"])
    general = [b["conversation_id"] for i, (_, b) in enumerate(results) if i % 4 != 0]
    assert mine == sorted(general[:40])

    # Full again: the next pass reads no page, however many wait.
    pages.clear()
    assert await dispatcher.run_pass() is False
    assert pages == []
