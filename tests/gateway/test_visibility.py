"""Least privilege: an agent token sees and acts on its queues' conversations only (by
default), its event stream carries nothing else, an integration token does not speak in an
agent's name unless allowed, and /metrics can require a token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.conftest import (
    ADMIN,
    Client,
    agent_token,
    base_config,
    wait_for,
)

SECRET_TEXT = "my refund code is 7731"


async def billing_and_general(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """A billing conversation (alice's queue, not bob's) and a general one."""
    _, b = await client.inbound("vis-b", f"refund please, {SECRET_TEXT}", sender="dana")
    billing = await wait_for(lambda: client.assigned(b["conversation_id"]))
    assert billing["queue"] == "billing"
    _, g = await client.inbound("vis-g", "hello there", sender="erin")
    general = await client.conversation(g["conversation_id"])
    return billing, general


async def test_agent_sees_only_its_queues_and_acts_only_there(
    gateway_factory: Any, tmp_path: Path
) -> None:
    _, client = await gateway_factory()
    billing, general = await billing_and_general(client)
    bob = agent_token("bob")  # queues: general only

    _, page = await client.call("GET", "/v1/conversations?limit=100", token=bob)
    ids = {c["id"] for c in page["conversations"]}
    assert general["id"] in ids and billing["id"] not in ids
    for method, path, body in (
        ("GET", f"/v1/conversations/{billing['id']}", None),
        ("POST", f"/v1/conversations/{billing['id']}/resolve", None),
        ("POST", f"/v1/conversations/{billing['id']}/transfer", {"queue": "general"}),
        ("POST", f"/v1/conversations/{billing['id']}/messages", {"text": "hi"}),
        ("POST", f"/v1/conversations/{billing['id']}/typing", {"typing": True}),
        ("GET", f"/v1/contacts/{billing['contact_id']}", None),
        ("GET", "/v1/contacts?identity=api:dana", None),
    ):
        status, err = await client.call(method, path, token=bob, json=body)
        assert status == 404, (path, status, err)  # its existence is not revealed
    # alice serves billing: she sees it, and the contact.
    status, conv = await client.call(
        "GET", f"/v1/conversations/{billing['id']}", token=agent_token("alice")
    )
    assert status == 200 and SECRET_TEXT in conv["messages"][0]["text"]
    status, _ = await client.call(
        "GET", f"/v1/contacts/{billing['contact_id']}", token=agent_token("alice")
    )
    assert status == 200


async def test_event_stream_of_an_agent_carries_only_what_it_sees(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    billing, general = await billing_and_general(client)
    await client.inbound("vis-g2", "the last one", sender="erin")

    async def stream_texts(token: str, until: str) -> str:
        got = []
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"{client.base}/v1/events?since=0", headers={"Authorization": f"Bearer {token}"}
            ) as ws,
        ):
            while True:
                msg = await asyncio.wait_for(ws.receive(), 5)
                got.append(msg.data)
                if until in msg.data:
                    return "\n".join(got)

    seen_by_bob = await stream_texts(agent_token("bob"), "the last one")
    assert SECRET_TEXT not in seen_by_bob and billing["id"] not in seen_by_bob
    assert general["id"] in seen_by_bob
    assert '"contact.created"' not in seen_by_bob
    seen_by_admin = await stream_texts(ADMIN, "the last one")
    assert SECRET_TEXT in seen_by_admin


async def test_visibility_assigned_and_all(gateway_factory: Any, tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    tokens = cfg["auth"]["tokens"]
    for t in tokens:
        if t["name"] == "bob":
            t["visibility"] = "assigned"
        if t["name"] == "carol":
            t["visibility"] = "all"
    _, client = await gateway_factory(cfg)
    billing, general = await billing_and_general(client)
    await wait_for(lambda: client.assigned(general["id"]))
    _, page = await client.call("GET", "/v1/conversations", token=agent_token("bob"))
    mine = {c["id"] for c in page["conversations"]}
    _, every = await client.call("GET", "/v1/conversations")
    assert mine == {c["id"] for c in every["conversations"] if c["assignee"] == "bob"}
    assert billing["id"] not in mine
    # carol sees all (she is offline, so nothing is hers), but may not act on alice's.
    status, _ = await client.call(
        "GET", f"/v1/conversations/{billing['id']}", token=agent_token("carol")
    )
    assert status == 200
    status, err = await client.call(
        "POST", f"/v1/conversations/{billing['id']}/resolve", token=agent_token("carol")
    )
    assert status == 403 and "alice" in err["error"]["message"]


async def test_integration_speaks_for_agents_only_when_allowed(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["tokens"].append(
        {
            "name": "relay",
            "role": "integration",
            "token": "test-relay-token-123",
            "acts_as_agents": True,
        }
    )
    _, client = await gateway_factory(cfg)
    billing, _ = await billing_and_general(client)
    path = f"/v1/conversations/{billing['id']}/messages"
    status, err = await client.call(
        "POST", path, token="test-integration-token", json={"text": "hi", "agent": "alice"}
    )
    assert status == 403 and "acts_as_agents" in err["error"]["message"]
    status, msg = await client.call(
        "POST", path, token="test-integration-token", json={"text": "hi"}
    )
    assert status == 202 and msg["sender"]["id"] == "helpdesk"
    status, msg = await client.call(
        "POST", path, token="test-relay-token-123", json={"text": "hi", "agent": "alice"}
    )
    assert status == 202 and msg["sender"]["id"] == "alice"


async def test_metrics_token(gateway_factory: Any, tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["metrics_token"] = "prometheus-scrape-token"
    _, client = await gateway_factory(cfg)
    status, body = await client.call("GET", "/metrics", token=None)
    assert status == 401 and json.dumps(body).count("metrics_token") == 1
    assert (await client.call("GET", "/metrics", token=agent_token("bob")))[0] == 401
    status, text = await client.call("GET", "/metrics", token="prometheus-scrape-token")
    assert status == 200 and "switchboard_messages_received_total" in text
    assert (await client.call("GET", "/metrics", token=ADMIN))[0] == 200
