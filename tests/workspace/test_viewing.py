"""Collision: who else is viewing or typing in a conversation, live on the stream, forgotten
30 s after the last heartbeat."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.conftest import ADMIN, agent_token, base_config, wait_for


async def _next_viewing(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=5)
        event = json.loads(msg.data)
        if event["type"] == "conversation.viewing":
            assert event["id"] is None  # live-only, never stored
            return dict(event["data"])


async def test_viewers_heartbeats_typing_and_expiry(gateway_factory: Any, tmp_path: Path) -> None:
    now = [time.time()]
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite"), clock=lambda: now[0])
    status, body = await client.inbound("v1", "hello")
    conv_id = body["conversation_id"]
    await wait_for(lambda: client.assigned(conv_id))
    path = f"/v1/conversations/{conv_id}/viewing"

    async with client.http.ws_connect(f"{client.base}/v1/events?access_token={ADMIN}") as ws:
        status, seen = await client.call("POST", path, token=agent_token("alice"), json={})
        assert status == 200, seen
        assert [(v["agent"], v["name"], v["typing"]) for v in seen["viewers"]] == [
            ("alice", "Alice", False)
        ]
        event = await _next_viewing(ws)
        assert event["conversation_id"] == conv_id
        assert [v["agent"] for v in event["viewers"]] == ["alice"]

        now[0] += 10
        status, seen = await client.call(
            "POST", path, token=agent_token("bob"), json={"typing": True}
        )
        assert [(v["agent"], v["typing"]) for v in seen["viewers"]] == [
            ("alice", False),
            ("bob", True),
        ]
        event = await _next_viewing(ws)
        assert [(v["agent"], v["typing"]) for v in event["viewers"]] == [
            ("alice", False),
            ("bob", True),
        ]
        # A heartbeat that changes nothing announces nothing; bob keeps bob alive.
        now[0] += 15
        await client.call("POST", path, token=agent_token("bob"), json={"typing": True})
        # alice's last heartbeat is 25 s old: still there; at 31 s she is gone.
        _, seen = await client.call("GET", path, token=agent_token("bob"))
        assert [v["agent"] for v in seen["viewers"]] == ["alice", "bob"]
        now[0] += 6
        _, seen = await client.call("GET", path, token=agent_token("bob"))
        assert [v["agent"] for v in seen["viewers"]] == ["bob"]
        event = await _next_viewing(ws)
        assert [v["agent"] for v in event["viewers"]] == ["bob"]

        status, seen = await client.call(
            "POST", path, token=agent_token("bob"), json={"leaving": True}
        )
        assert status == 200 and seen["viewers"] == []
        assert (await _next_viewing(ws))["viewers"] == []


async def test_viewing_needs_a_visible_conversation(gateway_factory: Any, tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["visibility"] = "assigned"
    _, client = await gateway_factory(cfg)
    status, body = await client.inbound("v1", "hello")
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    path = f"/v1/conversations/{conv['id']}/viewing"
    status, _ = await client.call("POST", path, token=agent_token("carol"), json={})
    assert status == 404
    status, _ = await client.call("GET", path, token=agent_token("carol"))
    assert status == 404
    status, _ = await client.call("POST", path, token=agent_token(conv["assignee"]))
    assert status == 400  # the body is required ...
    status, _ = await client.call("POST", path, token=agent_token(conv["assignee"]), json={})
    assert status == 200  # ... and `{}` is a plain heartbeat
