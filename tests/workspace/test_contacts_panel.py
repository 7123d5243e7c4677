"""The contact panel through the API: every conversation across channels, attributes edited
by an agent, merge two contacts (audit event, undo) and split an identity off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import Gateway
from tests.gateway.conftest import agent_token, base_config, wait_for


async def _contact_of(client: Any, ext: str, sender: str, name: str) -> tuple[str, str]:
    status, body = await client.inbound(ext, "hello", sender=sender, from_={"name": name})
    assert status == 202, body
    conv_id = str(body["conversation_id"])
    conv = await wait_for(lambda: client.assigned(conv_id))
    return str(conv["contact_id"]), conv_id


async def _events(gw: Gateway, type_: str) -> list[dict[str, Any]]:
    return [e.data for e in await gw.store.events_since(0, 10_000) if e.type == type_]


async def test_panel_merge_undo_and_split(
    gateway_factory: Any, tmp_path: Path, on_backend: Any
) -> None:
    gw, client = await gateway_factory(on_backend(base_config(tmp_path / "db.sqlite")))
    ann, ann_conv = await _contact_of(client, "a1", "ann-1", "Ann")
    bea, bea_conv = await _contact_of(client, "b1", "bea-1", "Bea")

    # An agent edits the contact's attributes and name from the panel.
    status, patched = await client.call(
        "PATCH",
        f"/v1/contacts/{ann}",
        token=agent_token("alice"),
        json={"name": "Ann Smith", "attributes": {"segment": "vip", "language": "de"}},
    )
    assert status == 200, patched
    assert patched["name"] == "Ann Smith"
    status, panel = await client.call("GET", f"/v1/contacts/{ann}", token=agent_token("alice"))
    assert status == 200, panel
    assert (panel["language"], panel["segment"]) == ("de", "vip")
    assert [c["id"] for c in panel["conversations"]] == [ann_conv]
    assert panel["identities"] == [{"kind": "api", "address": "ann-1", "verified": True}]
    assert panel["merges"] == []

    # Merge bea into ann: one contact with both identities and both conversations.
    status, merged = await client.call(
        "POST", f"/v1/contacts/{ann}/merge", token=agent_token("alice"), json={"other": bea}
    )
    assert status == 200, merged
    assert merged["moved"]["conversations"] == [bea_conv]
    assert merged["moved"]["identities"] == [{"kind": "api", "address": "bea-1", "verified": True}]
    panel = merged["contact"]
    assert {c["id"] for c in panel["conversations"]} == {ann_conv, bea_conv}
    assert {i["address"] for i in panel["identities"]} == {"ann-1", "bea-1"}
    [merge] = panel["merges"]
    assert merge["id"] == merged["merge_id"] and merge["other"] == bea and merge["by"] == "alice"
    [audit] = await _events(gw, "contact.merged")
    assert audit["merge_id"] == merged["merge_id"] and audit["by"] == "alice"
    assert audit["conversations"] == [bea_conv] and audit["merged_contact_id"] == bea
    status, again = await client.call("POST", f"/v1/contacts/{ann}/merge", json={"other": bea})
    assert status == 409, again
    # A new message from bea's identity now lands with ann.
    _, found = await client.call("GET", "/v1/contacts", params={"identity": "api:bea-1"})
    assert found["contacts"][0]["id"] == ann

    # Undo: bea stands alone again with her identity and conversation.
    status, undone = await client.call(
        "POST", f"/v1/contacts/{ann}/merge/{merged['merge_id']}/undo", token=agent_token("alice")
    )
    assert status == 200, undone
    assert [c["id"] for c in undone["conversations"]] == [ann_conv]
    assert undone["merges"][0]["undone_at"] is not None
    _, found = await client.call("GET", "/v1/contacts", params={"identity": "api:bea-1"})
    assert found["contacts"][0]["id"] == bea
    status, panel = await client.call("GET", f"/v1/contacts/{bea}")
    assert [c["id"] for c in panel["conversations"]] == [bea_conv]
    assert [e["merge_id"] for e in await _events(gw, "contact.unmerged")] == [merged["merge_id"]]
    status, _ = await client.call("POST", f"/v1/contacts/{ann}/merge/{merged['merge_id']}/undo")
    assert status == 409

    # Merge again, then split bea's identity off: a new contact with her conversation.
    status, merged = await client.call("POST", f"/v1/contacts/{ann}/merge", json={"other": bea})
    assert status == 200
    status, split = await client.call("POST", f"/v1/contacts/{ann}/identities/api%3Abea-1/split")
    assert status == 200, split
    assert split["contact"]["identities"] == [{"kind": "api", "address": "bea-1", "verified": True}]
    assert [c["id"] for c in split["contact"]["conversations"]] == [bea_conv]
    assert [c["id"] for c in split["source"]["conversations"]] == [ann_conv]
    assert [i["address"] for i in split["source"]["identities"]] == ["ann-1"]
    status, only = await client.call("POST", f"/v1/contacts/{ann}/identities/api%3Aann-1/split")
    assert status == 409, only
    status, _ = await client.call("POST", f"/v1/contacts/{ann}/identities/nonsense/split")
    assert status == 400


async def test_an_agent_only_reaches_contacts_it_sees(gateway_factory: Any, tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["visibility"] = "assigned"
    _, client = await gateway_factory(cfg)
    ann, conv_id = await _contact_of(client, "a1", "ann-1", "Ann")
    bea, _ = await _contact_of(client, "b1", "bea-1", "Bea")
    conv = await client.conversation(conv_id)
    stranger = "carol"  # offline: assigned nothing
    assert conv["assignee"] != stranger
    for method, path, body in (
        ("GET", f"/v1/contacts/{ann}", None),
        ("PATCH", f"/v1/contacts/{ann}", {"name": "X"}),
        ("POST", f"/v1/contacts/{ann}/merge", {"other": bea}),
    ):
        status, _ = await client.call(method, path, token=agent_token(stranger), json=body)
        assert status == 404, (method, path)
