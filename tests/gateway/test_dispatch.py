"""Routing under backlog: a pass costs what the free capacity can take, not what waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.dispatch import PAGE_SIZE, Dispatcher
from gateway.store.base import WaitingConversation, WaitingGroup, WaitingKey
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

    rows_read: list[int] = []
    real_page = gw.store.waiting_page

    async def counting_page(
        group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        page = await real_page(group, after, limit)
        rows_read.append(len(page))
        return page

    gw.store.waiting_page = counting_page  # type: ignore[method-assign]
    dispatcher = Dispatcher(gw.store, gw.bus, gw.config, time.time)
    assert await dispatcher.run_pass() is False
    assert rows_read == []  # nobody can take one: no waiting conversation is even read

    # Bob gets room for two: the two oldest general conversations are his, and the pass
    # reads one page of general (of 384 waiting there), nothing of the billing backlog
    # that he cannot take.
    await client.call("PUT", "/v1/agents/bob/capacity", json={"capacity": {"default": 2}})
    assert await dispatcher.run_pass() is False
    assert rows_read == [PAGE_SIZE]
    _, page = await client.call("GET", "/v1/conversations?assignee=bob&limit=10")
    mine = sorted(c["id"] for c in page["conversations"])
    first_general = [b["conversation_id"] for i, (_, b) in enumerate(results) if i % 4 != 0][:2]
    assert mine == sorted(first_general)
    assert all(c["queue"] == "general" for c in page["conversations"])

    # Full again: the next pass reads nothing, however many wait.
    rows_read.clear()
    assert await dispatcher.run_pass() is False
    assert rows_read == []
