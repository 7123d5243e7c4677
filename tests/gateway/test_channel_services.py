"""What the core offers connectors beyond submit: identity linking, history, availability,
and live typing signals both ways."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from connectors.base import (
    Capability,
    Connector,
    DeliveryResult,
    Identity,
    InboundMessage,
    OutboundMessage,
    Typing,
)
from gateway.ingest import ChannelInfo
from tests.gateway.conftest import ADMIN, agent_token, base_config, wait_for

CHAT = ChannelInfo("api", "api")


async def test_extra_identity_is_a_claim_not_a_way_into_the_contact(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    _, by_mail = await client.call(
        "POST",
        "/v1/channels/api/messages",
        token="test-channel-token",
        json={"external_id": "e1", "text": "by mail", "from": {"email": "dana@example.com"}},
    )
    result = await gw.ingestor.submit(
        CHAT,
        InboundMessage(
            "chat-1",
            Identity("webchat", "v-123"),
            "now by chat",
            extra_identities=[Identity("email", "Dana@Example.com")],
        ),
    )
    assert result.conversation_id != by_mail["conversation_id"]
    _, found = await client.call("GET", "/v1/contacts?identity=webchat:v-123")
    [visitor] = found["contacts"]
    # The chat visitor only typed the address: agents see the claim, nothing is linked.
    assert [(i["kind"], i["address"], i["verified"]) for i in visitor["identities"]] == [
        ("webchat", "v-123", True)
    ]
    assert visitor["claims"] == [
        {"kind": "email", "address": "dana@example.com", "verified": False}
    ]
    history = await gw.history(Identity("webchat", "v-123"), 10)
    assert [m["text"] for m in history] == ["now by chat"]
    assert history[-1]["conversation_id"] == result.conversation_id


async def test_availability_counts_online_agents(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    assert await gw.availability() == {"agents_online": 2}
    for agent in ("alice", "bob"):
        await client.call("PUT", f"/v1/agents/{agent}/presence", json={"status": "away"})
    assert await gw.availability() == {"agents_online": 0}


async def test_a_channel_counts_only_the_agents_who_could_take_its_conversations(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    _, bob, carol = cfg["agents"]
    bob["capacity"] = {"default": 2, "api": 0}  # takes no conversations of this kind
    carol.update(presence="online", queues=["billing"])  # not in the channel's queue
    gw, client = await gateway_factory(cfg)
    availability = gw.connectors["api"].ctx.availability
    assert await gw.availability() == {"agents_online": 3}
    assert await availability() == {"agents_online": 1}  # alice
    await client.call("PUT", "/v1/agents/alice/presence", json={"status": "away"})
    assert await availability() == {"agents_online": 0}


async def test_typing_is_live_only_both_ways(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    pushed: list[tuple[Identity, str, bool]] = []

    class Spy(Connector):
        kind = "spy"
        capabilities = frozenset({Capability.TEXT, Capability.TYPING})

        async def send(self, message: OutboundMessage) -> DeliveryResult:
            return DeliveryResult.sent()

        async def typing(self, to: Identity, conversation_id: str, typing: bool) -> None:
            pushed.append((to, conversation_id, typing))

    gw.connectors["api"] = Spy("api", gw.loaded.channel_settings["api"], gw.connectors["api"].ctx)
    _, body = await client.inbound("t1", "hello", sender="cust-t")
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    last = await gw.store.last_event_id()
    ws = await client.http.ws_connect(f"{client.base}/v1/events?access_token={ADMIN}")
    await gw.ingestor.submit(CHAT, Typing(Identity("api", "cust-t"), True))
    frame = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert frame["type"] == "conversation.typing" and frame["id"] is None
    assert frame["data"] == {"conversation_id": conv["id"], "from": "contact", "typing": True}
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/typing",
        token=agent_token(conv["assignee"]),
        json={"typing": True},
    )
    assert status == 202
    frame = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert frame["data"]["from"] == "agent" and frame["data"]["agent"] == conv["assignee"]
    assert pushed == [(Identity("api", "cust-t"), conv["id"], True)]
    assert await gw.store.last_event_id() == last  # nothing stored
    await ws.close()
