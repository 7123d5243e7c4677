"""Agent presence heartbeats: a console's heartbeat through any instance keeps its agent
online; once it has lapsed everywhere the agent goes offline. Agents without a console
(presence set by an integration) are left alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.coord.presence import LocalHeartbeats
from tests.gateway.conftest import agent_token, base_config, wait_for


async def presence_of(client: Any, agent: str) -> str:
    status, body = await client.call("GET", "/v1/agents")
    assert status == 200
    return str(next(a["presence"] for a in body["agents"] if a["id"] == agent))


async def beat(client: Any, agent: str) -> dict[str, Any]:
    status, body = await client.call(
        "POST", f"/v1/agents/{agent}/heartbeat", token=agent_token(agent)
    )
    assert status == 200, body
    return dict(body)


async def test_a_lapsed_heartbeat_on_every_instance_sets_the_agent_offline(
    gateway_factory: Any, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    cfg = base_config(tmp_path / "unused.sqlite")
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    cfg["coordination"] = {"redis": redis_url}
    cfg["timers"] = {"max_sleep": 0.2}
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    for gw in (gw_a, gw_b):
        gw.heartbeats.ttl = 1.0
        gw.presence.interval = 0.2
    assert (await beat(a, "alice"))["ttl"] == 1.0
    # the console reconnects to the other instance: its beats there keep alice online
    for _ in range(8):
        await asyncio.sleep(0.3)
        await beat(b, "alice")
    assert await presence_of(a, "alice") == "online"
    assert await presence_of(a, "bob") == "online"  # no console: nobody watches bob
    # the console is closed: within the TTL and a sweep, alice is offline on both
    await wait_for(lambda: _is(a, "alice", "offline"), timeout=5)
    assert await presence_of(b, "alice") == "offline"
    assert await presence_of(a, "bob") == "online"
    # an agent may only beat for itself
    status, _ = await a.call("POST", "/v1/agents/bob/heartbeat", token=agent_token("alice"))
    assert status == 403


async def _is(client: Any, agent: str, presence: str) -> bool:
    return await presence_of(client, agent) == presence


async def test_local_heartbeats() -> None:
    now = [0.0]
    beats = LocalHeartbeats(ttl=10.0, clock=lambda: now[0])
    await beats.beat("alice")
    now[0] = 9.0
    assert await beats.lapsed() == []
    now[0] = 10.0
    assert await beats.lapsed() == ["alice"]
    await beats.forget("alice")
    assert await beats.lapsed() == []
