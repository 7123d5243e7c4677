"""A reply, note or first message whose text is only whitespace is refused (422 naming
`text`), as an empty one is: `"   "` must not reach the customer as a blank message."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.gateway.conftest import agent_token, gateway_factory, wait_for

__all__ = ["gateway_factory"]

BLANKS = ["   ", "\n\t \n", "\u00a0\u2003"]


def _refused_for_text(status: int, body: Any) -> None:
    assert status == 422, body
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["details"] == [
        {"field": "text", "message": "Value error, the text is only whitespace"}
    ]


@pytest.mark.parametrize("blank", BLANKS)
async def test_a_blank_reply_is_refused_and_nothing_is_sent(
    gateway_factory: Any, blank: str
) -> None:
    _, client = await gateway_factory()
    _, body = await client.inbound("b1", "Where is my parcel?")
    conv_id = body["conversation_id"]
    await wait_for(lambda: client.assigned(conv_id))
    path = f"/v1/conversations/{conv_id}/messages"
    alice = agent_token("alice")
    _refused_for_text(*await client.call("POST", path, token=alice, json={"text": blank}))
    _refused_for_text(
        *await client.call("POST", path, token=alice, json={"text": blank, "private": True})
    )
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("text", blank)
    form.add_field("file", b"%PDF-1.4", filename="a.pdf", content_type="application/pdf")
    _refused_for_text(*await client.call("POST", path, token=alice, data=form))
    _refused_for_text(
        *await client.call(
            "POST", f"/v1/conversations/{conv_id}/notes", token=alice, json={"text": blank}
        )
    )
    conv = await client.conversation(conv_id)
    assert [m["text"] for m in conv["messages"]] == ["Where is my parcel?"]
    # Text with whitespace around it is a text.
    status, msg = await client.call("POST", path, token=alice, json={"text": "  On its way. "})
    assert status == 202 and msg["text"] == "  On its way. "


async def test_a_blank_first_message_is_refused(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    status, body = await client.call(
        "POST", "/v1/conversations", json={"channel": "api", "contact_id": "ct_nobody", "text": " "}
    )
    _refused_for_text(status, body)
