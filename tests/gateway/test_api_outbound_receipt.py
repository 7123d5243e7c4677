"""What an `api` channel's receiver answers decides the reply's `provider_message_id`: its
JSON `id` when it gives one, else nothing — never the text "None"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.gateway.conftest import agent_token, base_config, gateway_factory, wait_for

__all__ = ["gateway_factory"]


@pytest.fixture
async def receiver_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A receiver that takes every reply with 200 and the JSON body `request.param`."""
    answer = request.param

    async def handle(_: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/outbound", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/outbound"
    await runner.cleanup()


@pytest.mark.parametrize(
    "receiver_url", [{"ok": True}, {"id": None}, {}], indirect=True, ids=["no-id", "null", "empty"]
)
async def test_a_receiver_without_an_id_leaves_provider_message_id_empty(
    gateway_factory: Any, tmp_path: Path, receiver_url: str
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver_url))
    status, body = await client.inbound("r1", "hello")
    assert status == 202
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id))
    status, msg = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": "hi back"},
    )
    assert status == 202
    sent = await wait_for(lambda: client.message_with_status(conv_id, msg["id"], "sent"))
    assert sent["provider_message_id"] is None
