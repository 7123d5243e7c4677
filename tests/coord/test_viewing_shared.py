"""Who is viewing a conversation, across instances (gateway/workspace/viewing.py): with
Redis every instance lists every viewer and streams every change, and a viewer who stops
heartbeating disappears on every instance; a Redis error falls back to this instance."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.coord.keys import Keys
from gateway.model import Event
from gateway.workspace import viewing
from gateway.workspace.viewing import RedisViewers
from tests.coord.test_fanout import MakeGateway, cluster_config, stream_events
from tests.gateway.conftest import Client, agent_token, base_config, wait_for
from tests.pg import free_port

TTL = 1.0


@pytest.fixture
def quick_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instances look for expired viewers every 0.2 s (instead of 5 s)."""
    monkeypatch.setattr(viewing, "SWEEP_INTERVAL", 0.2)


async def listed(client: Client, conv_id: str, agent: str = "bob") -> list[tuple[str, bool]]:
    status, body = await client.call(
        "GET", f"/v1/conversations/{conv_id}/viewing", token=agent_token(agent)
    )
    assert status == 200, body
    return [(v["agent"], v["typing"]) for v in body["viewers"]]


Seen = list[tuple[float, dict[str, Any]]]


def viewing_events(seen: Seen) -> list[list[tuple[str, bool]]]:
    """The viewers of each `conversation.viewing` event a stream showed, in order."""
    return [
        [(v["agent"], v["typing"]) for v in e["data"]["viewers"]]
        for _, e in seen
        if e["type"] == "conversation.viewing"
    ]


def last_is(seen: Seen, viewers: list[tuple[str, bool]]) -> Callable[[], bool]:
    return lambda: viewing_events(seen)[-1:] == [viewers]


@pytest.mark.usefixtures("quick_sweep")
async def test_a_viewer_on_one_instance_is_seen_on_the_other_and_expires_on_both(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    for gw in (gw_a, gw_b):
        gw.viewers.ttl = TTL
    status, body = await a.inbound("v-1", "hello", sender="viewed")
    conv_id = body["conversation_id"]
    await wait_for(lambda: a.assigned(conv_id))
    path = f"/v1/conversations/{conv_id}/viewing"
    seen_a: Seen = []
    seen_b: Seen = []
    ready_a, ready_b = asyncio.Event(), asyncio.Event()
    readers = [
        asyncio.create_task(stream_events(a, seen_a, ready_a)),
        asyncio.create_task(stream_events(b, seen_b, ready_b)),
    ]
    try:
        await ready_a.wait()
        await ready_b.wait()
        await asyncio.sleep(0.2)
        # alice's console talks to A, bob's to B: each sees the other
        status, body = await a.call("POST", path, token=agent_token("alice"), json={})
        assert status == 200, body
        assert await listed(b, conv_id) == [("alice", False)]
        await wait_for(lambda: [("alice", False)] in viewing_events(seen_b), timeout=3)
        status, body = await b.call("POST", path, token=agent_token("bob"), json={"typing": True})
        assert status == 200, body
        both = [("alice", False), ("bob", True)]
        assert [(v["agent"], v["typing"]) for v in body["viewers"]] == both
        assert await listed(a, conv_id, "alice") == both
        for seen in (seen_a, seen_b):
            await wait_for(last_is(seen, both), timeout=3)
        # one announcement per change, whichever instance it was made on
        assert viewing_events(seen_a) == viewing_events(seen_b) == [[("alice", False)], both]
        # bob keeps beating through B; alice's console closed: she is gone everywhere
        # within the TTL
        for _ in range(4):
            await asyncio.sleep(TTL / 3)
            await b.call("POST", path, token=agent_token("bob"), json={"typing": True})
        for seen in (seen_a, seen_b):
            await wait_for(last_is(seen, [("bob", True)]), timeout=3)
        assert await listed(a, conv_id, "alice") == [("bob", True)]
        assert await listed(b, conv_id) == [("bob", True)]
        # then bob's console closes too: with nobody asking, a sweep finds him gone and
        # both streams hear it within the TTL and a few seconds
        for seen in (seen_a, seen_b):
            await wait_for(last_is(seen, []), timeout=TTL + 3)
        assert await listed(a, conv_id, "alice") == []
        assert await listed(b, conv_id) == []
        assert viewing_events(seen_a) == viewing_events(seen_b)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_leaving_on_one_instance_is_seen_on_the_other(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    _, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    status, body = await a.inbound("v-2", "hello", sender="left")
    conv_id = body["conversation_id"]
    path = f"/v1/conversations/{conv_id}/viewing"
    await a.call("POST", path, token=agent_token("alice"), json={})
    assert await listed(b, conv_id) == [("alice", False)]
    status, body = await b.call("POST", path, token=agent_token("alice"), json={"leaving": True})
    assert status == 200 and body["viewers"] == []
    assert await listed(a, conv_id) == []


async def test_redis_unreachable_falls_back_to_this_instance(
    gateway_factory: MakeGateway, tmp_path: Path
) -> None:
    """Redis configured but down: the viewers of this instance, never an error."""
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["coordination"] = {"redis": f"redis://127.0.0.1:{free_port()}/0"}
    _, client = await gateway_factory(cfg)
    status, body = await client.inbound("v-3", "hello", sender="nobody")
    conv_id = body["conversation_id"]
    path = f"/v1/conversations/{conv_id}/viewing"
    status, body = await client.call("POST", path, token=agent_token("alice"), json={})
    assert status == 200, body
    assert await listed(client, conv_id) == [("alice", False)]


async def test_a_failing_redis_command_falls_back_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A command that fails (Redis believed healthy) is answered from memory."""
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5
    )
    announced: list[Event] = []
    viewers = RedisViewers(client, Keys("t"), announced.extend, lambda: 1000.0, ttl=TTL)
    try:
        with caplog.at_level(logging.WARNING, logger="switchboard.viewing"):
            first = await viewers.heartbeat("c1", "alice", "Alice", False)
            second = await viewers.heartbeat("c1", "bob", "Bob", True)
            await viewers.expire()
        assert [v.agent for v in first] == ["alice"]
        assert [(v.agent, v.typing) for v in second] == [("alice", False), ("bob", True)]
        assert [len(e.data["viewers"]) for e in announced] == [1, 2]
        warnings = [r for r in caplog.records if r.name == "switchboard.viewing"]
        assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()
    finally:
        await client.aclose()


class Health:
    """Stands in for gateway/coord/client.py RedisClient's view of Redis."""

    healthy = True


async def test_while_redis_is_down_this_instance_remembers_and_forgets_it_after(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    health = Health()
    announced: list[Event] = []
    viewers = RedisViewers(
        client, Keys("t"), announced.extend, lambda: 1000.0, ttl=TTL, health=health
    )
    other = RedisViewers(client, Keys("t"), lambda events: None, lambda: 1000.0, ttl=TTL)
    try:
        with caplog.at_level(logging.INFO, logger="switchboard.viewing"):
            health.healthy = False
            down = await viewers.heartbeat("c1", "alice", "Alice", False)
            assert [v.agent for v in down] == ["alice"]
            assert await other.current("c1") == []  # Redis was not asked
            health.healthy = True
            back = await viewers.heartbeat("c1", "bob", "Bob", False)
            # alice's heartbeat went to memory only; her console's next one goes to Redis
            assert [v.agent for v in back] == ["bob"]
            assert [v.agent for v in await other.current("c1")] == ["bob"]
        messages = [r.getMessage() for r in caplog.records if r.name == "switchboard.viewing"]
        assert messages == [
            "who is viewing: Redis unavailable; this instance's viewers only",
            "who is viewing: shared through Redis again",
        ]
    finally:
        await client.aclose()
