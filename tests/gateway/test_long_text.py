"""A text over the gateway's limit, on a channel that keeps no raw message (`api`): stored
cut and marked, the whole text downloadable as an attachment, never refused."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import gateway_factory, wait_for

__all__ = ["gateway_factory"]


async def test_long_text_is_stored_cut_with_the_whole_text_attached(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    # the api channel caps its own input at 100,000 characters; lower the core's limit
    # under it so the core's rule is what this test sees
    gw.ingestor.max_text_chars = 1_000
    text = "".join(f"line {i}: ünïcödé is kept whole\n" for i in range(200))
    assert len(text) > 1_000
    status, body = await client.inbound("long-1", text, sender="cust-long")
    assert status == 202, body
    convs = await wait_for(lambda: client.conversations_of("api:cust-long"))
    (msg,) = (await client.conversation(convs[0]["id"]))["messages"]
    assert msg["truncated"] is True and msg["original_length"] == len(text)
    assert msg["text"] == text[:1_000]
    (att,) = msg["attachments"]
    assert att["name"] == "full-text.txt" and att["content_type"] == "text/plain"
    async with client.http.get(
        f"{client.base}/v1/blobs/{att['blob']}",
        headers={"Authorization": "Bearer test-admin-token"},
    ) as resp:
        assert resp.status == 200
        assert (await resp.read()).decode("utf-8") == text
    # a text within the limit is not marked
    await client.inbound("short-1", "short one", sender="cust-long")
    conv = await wait_for(lambda: _with(client, convs[0]["id"], 2))
    assert [(m["truncated"], m["original_length"]) for m in conv["messages"]][1] == (False, None)


async def _with(client: Any, conv_id: str, n: int) -> dict[str, Any] | None:
    conv = await client.conversation(conv_id)
    return conv if len(conv["messages"]) >= n else None
