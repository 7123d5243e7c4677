"""U+0000 (NUL) in what a client sends — a message's text, a sender's name or id, an
external id, a query parameter or a path id — is stored or refused with a precise 4xx on
both stores, never a 500. SQLite keeps NUL in TEXT; PostgreSQL refuses it in every text
column ("invalid byte sequence for encoding UTF8: 0x00")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from connectors.http import ApiError
from gateway.api.errors import error_middleware
from gateway.store.base import Unstorable
from tests.gateway.conftest import CHANNEL, base_config, gateway_factory

__all__ = ["gateway_factory"]


@pytest.mark.parametrize(
    "body",
    [
        {"external_id": "n1", "from": {"id": "cust-n1"}, "text": "hi\u0000there"},
        {"external_id": "n2", "from": {"id": "cust-n2", "name": "Da\u0000na"}, "text": "hi"},
        {"external_id": "n3", "from": {"id": "cust\u0000n3"}, "text": "hi"},
        {"external_id": "n\u00004", "from": {"id": "cust-n4"}, "text": "hi"},
    ],
)
async def test_a_nul_in_an_inbound_message_is_no_500(
    gateway_factory: Any, tmp_path: Path, store_block: dict[str, Any], body: dict[str, Any]
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "unused.sqlite", store=store_block))
    status, answer = await client.call(
        "POST", "/v1/channels/api/messages", token=CHANNEL, json=body
    )
    assert status in (202, 400, 422), answer
    if status == 202:  # stored: it reads back
        conv = await client.conversation(answer["conversation_id"])
        assert [m["id"] for m in conv["messages"]] == [answer["message_id"]]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/conversations?assignee=a%00b",
        "/v1/conversations?tag=a%00b",
        "/v1/contacts?identity=api:a%00b",
        "/v1/conversations/cv_%00",
        "/v1/contacts/ct_%00",
        "/v1/blobs/%00",
    ],
)
async def test_a_nul_in_a_query_or_an_id_is_no_500(
    gateway_factory: Any, tmp_path: Path, store_block: dict[str, Any], path: str
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "unused.sqlite", store=store_block))
    status, answer = await client.call("GET", path)
    assert status in (200, 400, 404), answer


NUL_REQUESTS = [
    ("/v1/conversations?assignee=a%00b", "assignee"),
    ("/v1/conversations?tag=a%00b", "tag"),
    ("/v1/conversations?queue=%00", "queue"),
    ("/v1/conversations?channel=%00", "channel"),
    ("/v1/conversations?contact=ct_%00", "contact"),
    ("/v1/contacts?identity=api:a%00b", "identity"),
    ("/v1/quarantine?channel=%00", "channel"),
    ("/v1/offers?agent=%00", "agent"),
    ("/v1/surveys?contact_id=%00", "contact_id"),
    ("/v1/stats?channel=%00", "channel"),
    ("/v1/conversations/cv_%00", "path"),
    ("/v1/contacts/ct_%00", "path"),
    ("/v1/blobs/%00", "path"),
    ("/v1/quarantine/%00", "path"),
]


async def test_a_nul_in_a_query_value_or_the_path_is_a_400_naming_it(
    gateway_factory: Any, tmp_path: Path, store_block: dict[str, Any]
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "unused.sqlite", store=store_block))
    for path, name in NUL_REQUESTS:
        status, answer = await client.call("GET", path)
        assert status == 400, (path, answer)
        assert answer["error"]["code"] == "invalid_parameter", (path, answer)
        assert answer["error"]["message"].startswith(f"{name} must not contain"), (path, answer)
    # Without the NUL the same reads answer as usual.
    status, _ = await client.call("GET", "/v1/conversations?assignee=ab")
    assert status == 200


async def test_an_inbound_message_is_stored_without_its_nul_characters(
    gateway_factory: Any, tmp_path: Path, store_block: dict[str, Any]
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "unused.sqlite", store=store_block))
    body = {
        "external_id": "n\u00009",
        "from": {
            "id": "cust\u0000n9",
            "name": "Da\u0000na",
            "attributes": {"pl\u0000an": "g\u0000old"},
        },
        "subject": "Or\u0000der",
        "text": "hi\u0000there",
        "metadata": {"page": ["/ca\u0000rt"]},
    }
    status, answer = await client.call(
        "POST", "/v1/channels/api/messages", token=CHANNEL, json=body
    )
    assert status == 202, answer
    conv = await client.conversation(answer["conversation_id"])
    [message] = conv["messages"]
    assert (message["text"], message["subject"]) == ("hithere", "Order"), message
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200, contact
    assert contact["name"] == "Dana", contact
    assert {"kind": "api", "address": "custn9"} in [
        {"kind": i["kind"], "address": i["address"]} for i in contact["identities"]
    ], contact
    assert contact["attributes"] == {"plan": "gold"}, contact
    # The same message sent again without the NUL is the same message: a duplicate.
    again = {**body, "external_id": "n9", "from": {"id": "custn9"}}
    status, answer2 = await client.call(
        "POST", "/v1/channels/api/messages", token=CHANNEL, json=again
    )
    assert status == 202 and answer2["duplicate"] is True, answer2


async def test_a_nul_in_an_api_body_is_dropped(
    gateway_factory: Any, tmp_path: Path, store_block: dict[str, Any]
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "unused.sqlite", store=store_block))
    status, answer = await client.inbound("nb1", "hello")
    assert status == 202, answer
    conv_id = answer["conversation_id"]
    status, note = await client.call(
        "POST", f"/v1/conversations/{conv_id}/notes", json={"text": "call\u0000 back"}
    )
    assert status in (200, 201, 202), note
    status, reply = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        json={"text": "on\u0000 it", "private": True},
    )
    assert status in (200, 201, 202), reply
    conv = await client.conversation(conv_id)
    assert [m["text"] for m in conv["messages"]] == ["hello", "call back", "on it"], conv


async def test_text_the_store_cannot_hold_is_a_400_not_a_500() -> None:
    """Defence in depth: input a handler let through that the store cannot keep (its
    `Unstorable`, PostgreSQL's answer to a NUL) is the client's fault."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raise Unstorable("PostgreSQL cannot store this text: invalid byte sequence: 0x00")

    with pytest.raises(ApiError) as caught:
        await error_middleware(make_mocked_request("GET", "/v1/somewhere"), handler)
    assert caught.value.status == 400
    assert json.loads(caught.value.text or "")["error"]["code"] == "bad_request"
