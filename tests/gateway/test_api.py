"""The HTTP API as a client sees it: flows, roles, and bad input answered precisely."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import standardwebhooks

from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    SECRET,
    Receiver,
    agent_token,
    base_config,
    wait_for,
)


async def test_message_in_routed_reply_out_signed(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver.url))
    status, body = await client.inbound("e1", "Please refund my invoice", from_={"name": "Dana"})
    assert status == 202 and body["duplicate"] is False
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    assert (
        conv["queue"] == "billing" and conv["assignee"] == "alice"
    )  # skills: alice 8 > carol offline
    status, msg = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token("alice"),
        json={"text": "Refund sent ✓"},
    )
    assert status == 202 and msg["status"] == "queued"
    await wait_for(lambda: receiver.requests)
    headers, raw = receiver.requests[0]
    # Verified with the reference Standard Webhooks library, not our own code.
    payload = standardwebhooks.Webhook(SECRET).verify(raw, headers)
    assert payload["text"] == "Refund sent ✓" and payload["to"] == {
        "kind": "api",
        "address": "cust-1",
    }
    assert payload["sender"] == {"name": "Alice"}  # the display name, not the id
    assert headers["webhook-id"] == msg["id"]
    final = await wait_for(lambda: client.message_with_status(conv_id, msg["id"], "sent"))
    assert final["provider_message_id"] == "rcv-1"
    conv = await client.conversation(conv_id)
    assert conv["status"] == "pending" and conv["first_response_at"] is not None


async def test_duplicate_external_id_same_answer_no_second_message(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    first = await client.inbound("dup-1", "hello")
    second = await client.inbound("dup-1", "hello again")
    assert first[0] == second[0] == 202
    assert second[1]["conversation_id"] == first[1]["conversation_id"]
    assert second[1]["message_id"] == first[1]["message_id"] and second[1]["duplicate"] is True
    conv = await client.conversation(first[1]["conversation_id"])
    assert [m["text"] for m in conv["messages"]] == ["hello"]


async def test_inbound_bad_input(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    path = "/v1/channels/api/messages"
    ok = {"external_id": "x", "text": "hi", "from": {"id": "c"}}
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ({"data": b'{"text": "\xff\xfe"}'}, 400, "invalid_encoding"),
        ({"data": b""}, 400, "invalid_json"),
        ({"json": {**ok, "text": 5}}, 422, "validation_error"),
        ({"json": {**ok, "from": {}}}, 422, "validation_error"),
        ({"json": {**ok, "surprise": 1}}, 422, "validation_error"),
        ({"json": [1, 2]}, 422, "validation_error"),
        ({"data": b'{"text":"' + b"a" * 70_000 + b'"}'}, 413, "payload_too_large"),
        ({"json": {**ok, "from": {"phone": "not-a-number"}}}, 422, "rejected"),
    ]
    for kwargs, status, code in cases:
        got, body = await client.call("POST", path, token=CHANNEL, **kwargs)
        assert (got, body["error"]["code"]) == (status, code), (kwargs, body)
        assert "Traceback" not in json.dumps(body)
    assert (await client.call("POST", path, token=None, json=ok))[0] == 401
    assert (await client.call("POST", path, token="wrong-token-123", json=ok))[0] == 401
    assert (await client.call("POST", path, token=ADMIN, json=ok))[
        0
    ] == 401  # API token is not the channel's
    assert (await client.call("POST", "/v1/channels/nope/messages", token=CHANNEL, json=ok))[
        0
    ] == 404
    # Nothing of the above was stored; the gateway is still up.
    status, body = await client.call("GET", "/v1/conversations")
    assert status == 200 and body["conversations"] == []
    assert (await client.call("GET", "/healthz", token=None))[0] == 200


async def test_api_auth_and_roles(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    _, body = await client.inbound("r1", "hello")
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    owner = conv["assignee"]
    other = "bob" if owner == "alice" else "alice"
    assert (await client.call("GET", "/v1/conversations", token=None))[0] == 401
    assert (await client.call("GET", "/v1/conversations", token="nope-nope-nope"))[0] == 401
    # An agent token acts only as its agent.
    s, b = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(other),
        json={"text": "x"},
    )
    assert (s, b["error"]["code"]) == (403, "forbidden")
    assert (
        await client.call(
            "PUT", f"/v1/agents/{owner}/presence", token=agent_token(other), json={"status": "away"}
        )
    )[0] == 403
    assert (
        await client.call("POST", f"/v1/conversations/{conv_id}/resolve", token=agent_token(other))
    )[0] == 403
    assert (
        await client.call(
            "POST",
            f"/v1/conversations/{conv_id}/assign",
            token=agent_token(other),
            json={"agent": owner},
        )
    )[0] == 403
    assert (
        await client.call(
            "PUT",
            f"/v1/agents/{owner}/capacity",
            token=agent_token(owner),
            json={"capacity": {"default": 9}},
        )
    )[0] == 403
    # ...and the owner can.
    assert (
        await client.call("POST", f"/v1/conversations/{conv_id}/resolve", token=agent_token(owner))
    )[0] == 200


async def test_unknown_ids_and_wrong_types(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    for method, path, body in [
        ("GET", "/v1/conversations/cv_nope", None),
        ("POST", "/v1/conversations/cv_nope/messages", {"text": "x"}),
        ("POST", "/v1/conversations/cv_nope/resolve", None),
        ("GET", "/v1/contacts/ct_nope", None),
        ("PUT", "/v1/agents/zed/presence", {"status": "online"}),
        ("GET", "/v1/contacts?identity=email:nobody@example.com", None),
        ("GET", "/v1/nothing-here", None),
    ]:
        status, resp = (
            await client.call(method, path, json=body) if body else await client.call(method, path)
        )
        assert (status, resp["error"]["code"]) == (404, "not_found"), path
    s, b = await client.call("PUT", "/v1/agents/alice/presence", json={"status": "sleeping"})
    assert s == 422 and b["error"]["details"][0]["field"] == "status"
    assert (await client.call("GET", "/v1/conversations?limit=abc"))[0] == 400
    assert (await client.call("GET", "/v1/conversations?status=weird"))[0] == 400
    assert (await client.call("GET", "/v1/contacts?identity=nocolon"))[0] == 400
    assert (await client.call("DELETE", "/v1/conversations"))[0] == 405


async def test_contacts_lookup_and_normalisation(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    await client.call(
        "POST",
        "/v1/channels/api/messages",
        token=CHANNEL,
        json={
            "external_id": "n1",
            "text": "hi",
            "from": {"email": "Dana@Example.COM", "name": "Dana"},
        },
    )
    s, b = await client.call("GET", "/v1/contacts?identity=email:dana@example.com")
    assert s == 200 and b["contacts"][0]["name"] == "Dana"
    contact_id = b["contacts"][0]["id"]
    await client.call(
        "POST",
        "/v1/channels/api/messages",
        token=CHANNEL,
        json={"external_id": "n2", "text": "hi", "from": {"phone": "+44 20 7946 0958"}},
    )
    s, b = await client.call("GET", "/v1/contacts?identity=phone:%2B442079460958")
    assert s == 200 and b["contacts"][0]["identities"] == [
        {"kind": "phone", "address": "+442079460958", "verified": True}
    ]
    s, b = await client.call("GET", f"/v1/contacts/{contact_id}")
    assert b["identities"] == [{"kind": "email", "address": "dana@example.com", "verified": True}]


async def test_waiting_conversation_assigned_when_agent_comes_online(
    gateway_factory: Any, tmp_path: Any
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    for agent in cfg["agents"]:
        agent["presence"] = "offline"
    _, client = await gateway_factory(cfg)
    _, b1 = await client.inbound("w1", "first", sender="c1")
    _, b2 = await client.inbound(
        "w2", "urgent one", sender="c2", from_={"attributes": {"segment": "vip"}}
    )
    _, conv = await client.call("GET", f"/v1/conversations/{b1['conversation_id']}")
    assert conv["status"] == "open" and conv["assignee"] is None
    # carol (capacity 1) comes online: the urgent VIP conversation goes first, though younger.
    await client.call("PUT", "/v1/agents/carol/presence", json={"status": "online"})
    vip = await wait_for(lambda: client.assigned(b2["conversation_id"]))
    assert vip["assignee"] == "carol" and vip["priority"] == "urgent"
    assert (await client.conversation(b1["conversation_id"]))["assignee"] is None
    # Capacity appears when carol resolves: the other one is assigned to her.
    await client.call(
        "POST", f"/v1/conversations/{b2['conversation_id']}/resolve", token=agent_token("carol")
    )
    first = await wait_for(lambda: client.assigned(b1["conversation_id"]))
    assert first["assignee"] == "carol"


async def test_routing_explain_changes_nothing(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    s, b = await client.call(
        "POST", "/v1/routing/explain", json={"channel": "api", "text": "refund please"}
    )
    assert s == 200
    assert b["classification"]["queue"] == "billing" and b["classification"]["rule"] == "billing"
    assert b["decision"]["agent"] == "alice"
    assert any("carol" in r and "offline" in r for r in b["decision"]["reasons"])
    assert b["classification"]["reasons_localized"] == {
        "en": ["rule 'billing' matched: text contains 'refund'", "priority 'normal' from default"],
        "de": [
            "Regel 'billing' trifft zu: Text enthält 'refund'",
            "Priorität 'normal' aus der Voreinstellung",
        ],
    }
    assert b["decision"]["reasons_localized"]["en"] == b["decision"]["reasons"]
    assert b["decision"]["reasons_localized"]["de"][-1] == (
        "alice gewählt nach skills; Skill-Wert 8; Auslastung 0/2"
    )
    assert (await client.call("GET", "/v1/conversations"))[1]["conversations"] == []


async def test_routing_reasons_in_german_beside_the_english_ones(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    _, body = await client.inbound("de-1", "Meine Rechnung (invoice) stimmt nicht")
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    routing = conv["routing"]
    assert routing["reasons"][0] == "rule 'billing' matched: text contains 'invoice'"
    assert routing["reasons_localized"]["en"] == routing["reasons"]
    assert routing["reasons_localized"]["de"] == [
        "Regel 'billing' trifft zu: Text enthält 'invoice'",
        "Priorität 'normal' aus der Voreinstellung",
    ]
    [assigned] = [
        e for e in await gw.store.events_since(0, 100) if e.type == "conversation.assigned"
    ]
    assert assigned.data["reasons_localized"]["en"] == assigned.data["reasons"]
    assert assigned.data["reasons_localized"]["de"][0] == routing["reasons_localized"]["de"][0]
    assert assigned.data["reasons_localized"]["de"][-1].startswith("alice gewählt nach skills;")
    s, b = await client.call("POST", "/v1/routing/explain", json={"conversation": conv_id})
    assert s == 200, b
    assert b["classification"]["reasons_localized"] == routing["reasons_localized"]


async def test_readyz_and_metrics(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    await wait_for(lambda: _ready(client))
    await client.inbound("m1", "hello")
    s, text = await client.call("GET", "/metrics", token=None)
    assert s == 200 and 'switchboard_messages_received_total{channel="api",kind="api"}' in text


async def _ready(client: Any) -> bool:
    s, b = await client.call("GET", "/readyz", token=None)
    return s == 200 and b["channels"] == {"api": "running"}


async def test_me_and_unencoded_plus_in_phone_lookup(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    assert (await client.call("GET", "/v1/me", token=agent_token("bob")))[1] == {
        "name": "bob",
        "role": "agent",
        "agent": "bob",
        "agent_name": "Bob",
        "queues": ["general"],
        "reader": "bob",
    }
    assert (await client.call("GET", "/v1/me", token=None))[0] == 401
    await client.call(
        "POST",
        "/v1/channels/api/messages",
        token=CHANNEL,
        json={"external_id": "p1", "text": "hi", "from": {"phone": "+14155550123"}},
    )
    s, b = await client.call(
        "GET", "/v1/contacts?identity=phone:+14155550123"
    )  # `+` as typed in curl
    assert s == 200 and b["contacts"][0]["identities"] == [
        {"kind": "phone", "address": "+14155550123", "verified": True}
    ]


async def test_agent_cannot_take_or_reopen_a_colleagues_conversation(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    _, body = await client.inbound("own-1", "hello")
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    owner = conv["assignee"]
    other = "bob" if owner == "alice" else "alice"
    s, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/assign",
        token=agent_token(other),
        json={"agent": other},
    )
    assert s == 403
    await client.call("POST", f"/v1/conversations/{conv['id']}/resolve", token=agent_token(owner))
    s, _ = await client.call(
        "POST", f"/v1/conversations/{conv['id']}/reopen", token=agent_token(other)
    )
    assert s == 403
    assert (
        await client.call(
            "POST", f"/v1/conversations/{conv['id']}/reopen", token=agent_token(owner)
        )
    )[0] == 200


async def test_sse_reconnect_resumes_from_last_event_id(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    await client.inbound("sse-1", "hello")
    last = await gw.store.last_event_id()
    await client.inbound("sse-2", "again", sender="cust-2")
    # An EventSource reconnects to the same URL (?since=0) and adds Last-Event-ID.
    headers = {
        "Authorization": f"Bearer {ADMIN}",
        "Accept": "text/event-stream",
        "Last-Event-ID": str(last),
    }
    async with client.http.get(f"{client.base}/v1/events?since=0", headers=headers) as resp:
        chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert chunk.startswith(f"id: {last + 1}\n".encode())


async def test_stop_refuses_new_work_and_ends_open_streams(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    connector = gw.connectors["api"]

    channel_stopping = asyncio.Event()

    async def slow_stop() -> None:  # a channel that takes a while to stop, like IMAP logout
        channel_stopping.set()
        await asyncio.sleep(1.0)

    connector.stop = slow_stop  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with client.http.get(f"{client.base}/v1/events", headers=headers) as stream:
        started = asyncio.get_running_loop().time()
        stopping = asyncio.create_task(gw.stop())
        await asyncio.wait_for(channel_stopping.wait(), 5)  # nothing new may be accepted now
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.post(f"{client.base}/v1/channels/api/messages", json={})
        await asyncio.wait_for(stopping, 5)
        assert await stream.content.read() == b""  # the open stream was ended
    assert asyncio.get_running_loop().time() - started < 5
    await gw.stop()  # a second stop is harmless
