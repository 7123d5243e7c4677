"""A note never reaches the customer: checked where the customer is — at the Twilio
stand-in (what the gateway asked Twilio to send) and on the web chat visitor's socket
(live frames and the history restored on reconnect)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import agent_token, wait_for
from tests.standins.twilio import TwilioStandin
from tests.twilio.test_twilio_gateway import post_sms, routed_conversation, start, status_is
from tests.webchat.conftest import (  # noqa: F401 - fixtures for these tests
    Chat,
    chat,
    fast_availability,
    make_chat,
    receive,
)


async def test_a_note_never_reaches_the_sms_customer(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    await post_sms(client, twilio, "I need a refund")
    conv = await routed_conversation(client)
    token = agent_token(conv["assignee"])
    status, note = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/notes",
        token=token,
        json={"text": "INTERNAL: refund needs approval"},
    )
    assert status == 201, note
    status, private = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=token,
        json={"text": "INTERNAL too", "private": True},
    )
    assert status == 202, private
    status, out = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=token,
        json={"text": "Your refund is approved."},
    )
    assert status == 202
    await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"))
    await asyncio.sleep(0.3)
    assert [m["_request"]["Body"] for m in twilio.messages] == ["Your refund is approved."]


async def test_a_note_never_reaches_the_chat_visitor(chat: Chat) -> None:  # noqa: F811
    tab, welcome = await chat.visitor()
    await tab.send_json({"type": "message", "client_id": "c1", "text": "hello"})
    await receive(tab)  # the acknowledgement of the visitor's own message
    conv = await chat.assigned()
    token = agent_token(conv["assignee"])
    status, _ = await chat.api.call(
        "POST",
        f"/v1/conversations/{conv['id']}/notes",
        token=token,
        json={"text": "INTERNAL: looks like a reseller"},
    )
    assert status == 201
    with pytest.raises(asyncio.TimeoutError):
        frame = await tab.receive(timeout=0.5)
        raise AssertionError(f"the visitor got {frame.data!r}")
    status, _ = await chat.api.call(
        "POST", f"/v1/conversations/{conv['id']}/messages", token=token, json={"text": "Hi!"}
    )
    assert status == 202
    frame = await receive(tab)
    assert frame["type"] == "message" and frame["text"] == "Hi!"
    # Reconnecting restores the history: the note is not in it.
    _, back = await chat.visitor(welcome["token"])
    assert [(m["direction"], m["text"]) for m in back["history"]] == [
        ("in", "hello"),
        ("out", "Hi!"),
    ]
    # The agent's timeline has all three.
    texts = [m["text"] for m in await chat.messages(conv["id"])]
    assert texts == ["hello", "INTERNAL: looks like a reseller", "Hi!"]
