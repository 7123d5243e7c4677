"""Canned replies: from the config and through the API, team and personal, rendered with
placeholders in the contact's language, and a reply sent from one arrives filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.config import load_config
from gateway.workspace.canned import render
from tests.gateway.conftest import (
    ADMIN,
    Client,
    Receiver,
    agent_token,
    base_config,
    config_text,
    wait_for,
)

CANNED = [
    {
        "shortcut": "hello",
        "title": "Greeting",
        "text": {
            "en": "Hello {{contact.name}}, this is {{agent.name}} ({{conversation.id}}).",
            "de": "Hallo {{contact.name}}, hier ist {{agent.name}} ({{conversation.id}}).",
        },
    },
    {
        "shortcut": "refund",
        "title": "Refund policy",
        "text": {"en": "30 days."},
        "queues": ["billing"],
    },
    {"shortcut": "mine", "title": "Bob's sign-off", "text": {"en": "Cheers, Bob"}, "agent": "bob"},
]


def _config(tmp_path: Path, url: str = "http://127.0.0.1:9/none") -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite", url)
    cfg["canned_replies"] = CANNED
    cfg["auth"]["visibility"] = "queues"
    return cfg


async def _shortcuts(client: Any, token: str, **params: str) -> list[str]:
    status, body = await client.call("GET", "/v1/canned-replies", token=token, params=params)
    assert status == 200, body
    return [r["shortcut"] for r in body["canned_replies"]]


async def test_who_sees_which_and_who_may_change_them(
    gateway_factory: Any, tmp_path: Path, on_backend: Any
) -> None:
    _, client = await gateway_factory(on_backend(_config(tmp_path)))
    # bob works `general` only: no billing reply; his own personal one.
    assert await _shortcuts(client, agent_token("bob")) == ["hello", "mine"]
    assert await _shortcuts(client, agent_token("alice")) == ["hello", "refund"]
    assert await _shortcuts(client, ADMIN) == ["hello", "mine", "refund"]
    assert await _shortcuts(client, ADMIN, q="REF") == ["refund"]

    # An agent makes a personal one for itself; it may not make a team one.
    body = {"shortcut": "thanks", "title": "Thanks", "text": {"de": "Danke!"}, "scope": "personal"}
    status, mine = await client.call(
        "POST", "/v1/canned-replies", token=agent_token("alice"), json=body
    )
    assert status == 201, mine
    assert mine["agent"] == "alice" and mine["source"] == "api" and mine["scope"] == "personal"
    status, _ = await client.call(
        "POST", "/v1/canned-replies", token=agent_token("alice"), json=body | {"scope": "team"}
    )
    assert status == 403
    status, dup = await client.call(
        "POST", "/v1/canned-replies", token=agent_token("alice"), json=body
    )
    assert status == 409 and dup["error"]["code"] == "duplicate"
    # The same shortcut is free for another agent.
    status, _ = await client.call("POST", "/v1/canned-replies", token=agent_token("bob"), json=body)
    assert status == 201
    assert "thanks" in await _shortcuts(client, agent_token("alice"))
    # bob neither sees nor changes alice's.
    status, _ = await client.call(
        "DELETE", f"/v1/canned-replies/{mine['id']}", token=agent_token("bob")
    )
    assert status == 404
    # An admin makes a team reply; it is stored and listed for the queue's agents.
    team = {
        "shortcut": "hours",
        "title": "Opening hours",
        "text": {"en": "9 to 5"},
        "scope": "team",
        "queues": ["billing"],
    }
    status, made = await client.call("POST", "/v1/canned-replies", json=team)
    assert status == 201, made
    assert "hours" in await _shortcuts(client, agent_token("alice"))
    assert "hours" not in await _shortcuts(client, agent_token("bob"))
    status, changed = await client.call(
        "PUT", f"/v1/canned-replies/{made['id']}", json=team | {"title": "Hours"}
    )
    assert status == 200 and changed["title"] == "Hours"
    assert changed["created_at"] == made["created_at"]
    status, _ = await client.call(
        "PUT", f"/v1/canned-replies/{made['id']}", token=agent_token("alice"), json=team
    )
    assert status == 403
    # Config replies are read-only; unknown queues are refused.
    status, ro = await client.call("DELETE", "/v1/canned-replies/config:hello")
    assert status == 409 and ro["error"]["code"] == "read_only"
    status, _ = await client.call(
        "POST", "/v1/canned-replies", json=team | {"queues": ["nope"], "shortcut": "x"}
    )
    assert status == 422
    status, _ = await client.call("DELETE", f"/v1/canned-replies/{made['id']}")
    assert status == 204
    assert "hours" not in await _shortcuts(client, ADMIN)


async def test_rendered_in_the_contacts_language_and_sent_filled_in(
    gateway_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    _, client = await gateway_factory(_config(tmp_path, receiver.url))
    status, body = await client.inbound("c1", "Hallo?", from_={"name": "Dana Fox"})
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    token = agent_token(conv["assignee"])
    name = {"alice": "Alice", "bob": "Bob"}[conv["assignee"]]

    path = f"/v1/canned-replies/config:hello/render?conversation_id={conv_id}"
    status, rendered = await client.call("POST", path, token=token)
    assert status == 200, rendered
    assert rendered["language"] == "en"  # nobody told us the contact's language
    assert rendered["text"] == f"Hello Dana Fox, this is {name} ({conv_id})."

    status, _ = await client.call(
        "PATCH", f"/v1/contacts/{conv['contact_id']}", json={"attributes": {"language": "de"}}
    )
    assert status == 200
    status, rendered = await client.call("POST", path, token=token)
    assert rendered["language"] == "de"
    assert rendered["text"] == f"Hallo Dana Fox, hier ist {name} ({conv_id})."

    # A reply with only an English variant falls back to it.
    status, only_en = await client.call(
        "POST", f"/v1/canned-replies/config:refund/render?conversation_id={conv_id}", token=ADMIN
    )
    assert status == 200 and only_en == {
        "id": "config:refund",
        "shortcut": "refund",
        "language": "en",
        "text": "30 days.",
    }

    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=token,
        json={"text": rendered["text"]},
    )
    assert status == 202
    await wait_for(lambda: receiver.requests)
    assert receiver.bodies()[0]["text"] == f"Hallo Dana Fox, hier ist {name} ({conv_id})."

    status, _ = await client.call("POST", "/v1/canned-replies/config:hello/render", token=token)
    assert status == 400
    status, _ = await client.call(
        "POST", "/v1/canned-replies/nope/render", token=token, params={"conversation_id": conv_id}
    )
    assert status == 404


def test_placeholders_without_a_value_leave_no_gap() -> None:
    assert render("Hello {{contact.name}}, hi", {"contact.name": None}) == "Hello, hi"
    assert render("{{ contact.name }}!", {"contact.name": "Ann"}) == "Ann!"
    assert render("{{unknown.thing}} stays", {"contact.name": "x"}) == "{{unknown.thing}} stays"


async def test_canned_replies_of_the_config_change_on_reload(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(cfg))
    gw = Gateway(load_config(path))
    await gw.start()
    try:
        async with aiohttp.ClientSession() as http:
            client = Client(f"http://127.0.0.1:{gw.port}", http)
            cfg["canned_replies"] = [
                *CANNED,
                {"shortcut": "bye", "title": "Bye", "text": {"en": "Bye"}},
            ]
            cfg["agent_attachments"] = {"link_ttl": 60}
            path.write_text(config_text(cfg))
            result = await gw.reload()
            assert result.ok and {"canned_replies", "agent_attachments"} <= set(result.changed)
            assert "bye" in await _shortcuts(client, ADMIN)
            assert gw.files.ttl == 60
    finally:
        await gw.stop()
