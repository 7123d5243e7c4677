"""Internal notes through the API: on the agents' timeline and stream, never at the customer."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.app import Gateway
from tests.gateway.conftest import Receiver, agent_token, base_config, wait_for


async def _events(gw: Gateway, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.type, e.data)
        for e in await gw.store.events_since(0, 10_000)
        if e.type.startswith(prefix)
    ]


async def _conversation(client: Any) -> str:
    status, body = await client.inbound("n1", "Where is my parcel?", from_={"name": "Dana"})
    assert status == 202
    conv_id = str(body["conversation_id"])
    await wait_for(lambda: client.assigned(conv_id))
    return conv_id


async def test_a_note_is_on_the_timeline_and_never_sent(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any, on_backend: Any
) -> None:
    cfg = on_backend(base_config(tmp_path / "db.sqlite", receiver.url))
    gw, client = await gateway_factory(cfg)
    conv_id = await _conversation(client)
    conv = await client.conversation(conv_id)
    me = conv["assignee"]
    status, note = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/notes",
        token=agent_token(me),
        json={"text": "Customer sounds upset, @carol knows this parcel. mail@bob.example"},
    )
    assert status == 201, note
    assert note["private"] is True and note["direction"] == "note"
    assert note["mentions"] == ["carol"]  # mail@bob.example mentions nobody
    # The other way in: a reply marked private is a note too.
    status, second = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(me),
        json={"text": "second thought", "private": True, "mentions": ["bob"]},
    )
    assert status == 202 and second["private"] is True and second["mentions"] == ["bob"]
    # A real reply, so we know the channel would have got something by now.
    status, reply = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(me),
        json={"text": "On its way"},
    )
    assert status == 202
    await wait_for(lambda: client.message_with_status(conv_id, reply["id"], "sent"))
    await asyncio.sleep(0.2)
    sent = [b["text"] for b in receiver.bodies()]
    assert sent == ["On its way"]  # the customer's channel got the reply, no note

    timeline = (await client.conversation(conv_id))["messages"]
    kinds = [(m["direction"], m["private"], m["text"][:14]) for m in timeline]
    assert kinds == [
        ("in", False, "Where is my pa"),
        ("note", True, "Customer sound"),
        ("note", True, "second thought"),
        ("out", False, "On its way"),
    ]
    status, listed = await client.call("GET", f"/v1/conversations/{conv_id}/notes")
    assert status == 200 and [n["id"] for n in listed["notes"]] == [note["id"], second["id"]]

    created = await _events(gw, "message.created")
    assert [d["message_id"] for _, d in created] == [note["id"], second["id"]]
    assert all(d["private"] is True for _, d in created)
    mentioned = await _events(gw, "agent.mentioned")
    assert [(d["agent"], d["by"], d["message_id"]) for _, d in mentioned] == [
        ("carol", me, note["id"]),
        ("bob", me, second["id"]),
    ]
    # Nothing about notes is queued for delivery.
    queued = await _events(gw, "message.queued")
    assert [d.get("message_id") or d["message"]["id"] for _, d in queued] == [reply["id"]]


async def test_notes_need_a_visible_conversation_and_known_mentions(
    gateway_factory: Any, tmp_path: Any
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["visibility"] = "assigned"
    _, client = await gateway_factory(cfg)
    conv_id = await _conversation(client)
    assignee = (await client.conversation(conv_id))["assignee"]
    other = "bob" if assignee != "bob" else "alice"
    status, body = await client.call(
        "POST", f"/v1/conversations/{conv_id}/notes", token=agent_token(other), json={"text": "hm"}
    )
    assert status == 404, body  # not visible to that agent: existence not revealed
    status, body = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/notes",
        token=agent_token(assignee),
        json={"text": "x", "mentions": ["nobody"]},
    )
    assert status == 422 and "nobody" in body["error"]["message"]
    status, body = await client.call(
        "POST", f"/v1/conversations/{conv_id}/notes", token=agent_token(assignee), json={"text": ""}
    )
    assert status == 422
