"""What an `api` channel's receiver answers decides the reply's `provider_message_id`: its
JSON `id` when it gives one, else nothing — never the text "None"."""

from __future__ import annotations

import asyncio
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


async def reply_sent(client: Any) -> Any:
    """A customer message, the assigned agent's reply, and that reply once `sent`."""
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
    return await wait_for(lambda: client.message_with_status(conv_id, msg["id"], "sent"))


@pytest.mark.parametrize(
    ("receiver_url", "provider_id"),
    [
        ({"ok": True}, None),  # no id (as `switchboard webhook-listen` answers): none, not "None"
        ({"id": None}, None),
        ({}, None),
        ({"padding": "x" * 1000, "id": "msg-42"}, "msg-42"),  # the id after 300 characters
        ({"id": 42}, "42"),
        ({"id": True}, None),
        ({"id": {"nested": 1}}, None),
    ],
    indirect=["receiver_url"],
    ids=["no-id", "null", "empty", "long-answer", "number", "boolean", "object"],
)
async def test_the_receivers_id_becomes_the_provider_message_id(
    gateway_factory: Any, tmp_path: Path, receiver_url: str, provider_id: str | None
) -> None:
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver_url))
    sent = await reply_sent(client)
    assert sent["provider_message_id"] == provider_id


LARGE = 32 * 1024 * 1024  # streamed, never held: far more than the socket buffers take


async def test_a_huge_answer_is_not_read_whole(gateway_factory: Any, tmp_path: Path) -> None:
    """A receiver answering 200 with a huge body: the reply is sent, and the gateway stops
    reading after the first KiBs (it held the whole answer in memory before)."""
    written = 0
    done = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal written
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b" " * 65536
        try:
            while written < LARGE:
                await resp.write(chunk)  # waits while the gateway does not read
                written += len(chunk)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the gateway closed the connection
        finally:
            done.set()
        return resp

    app = web.Application()
    app.router.add_post("/outbound", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/outbound"
        _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", url))
        await reply_sent(client)
        await asyncio.wait_for(done.wait(), 10)
        assert written < LARGE // 2
    finally:
        await runner.cleanup()
