"""The web chat's part in the portal, over its socket: a visitor without a contact gets no
link, one who wrote gets one (in its language), a returning visitor finds it in `welcome`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.webchat.conftest import Chat, free_port, receive, webchat_config


async def _chat(gateway_factory: Any, tmp_path: Path, enabled: bool) -> Chat:
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["portal"] = {"enabled": enabled}
    gw, client = await gateway_factory(cfg)
    base = f"http://127.0.0.1:{port}"
    return Chat(gw, client, base, base, aiohttp.ClientSession())


async def _frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame = await receive(ws)
        if frame["type"] == kind:
            return frame


async def test_the_widget_gets_a_link_once_the_visitor_has_written(
    gateway_factory: Any, tmp_path: Path
) -> None:
    chat = await _chat(gateway_factory, tmp_path, enabled=True)
    try:
        ws = await chat.connect()
        await ws.send_json({"type": "hello", "token": None, "language": "de-DE"})
        welcome = await _frame(ws, "welcome")
        assert welcome["portal"] is True and welcome["portal_link"] is None
        await ws.send_json({"type": "portal"})
        assert (await _frame(ws, "portal"))["url"] is None  # nothing sent yet: no contact

        await ws.send_json({"type": "message", "client_id": "m1", "text": "Wo ist mein Paket?"})
        await _frame(ws, "ack")
        await ws.send_json({"type": "portal"})
        link = await _frame(ws, "portal")
        assert link["label"] == "Meine Anfragen ansehen"
        async with chat.http.get(link["url"], headers={"Accept-Language": "de"}) as resp:
            assert resp.status == 200
            assert "Wo ist mein Paket?" in await resp.text()
        await ws.close()

        # Back later: the link is in the welcome.
        again = await chat.connect()
        await again.send_json({"type": "hello", "token": welcome["token"], "language": "en"})
        back = await _frame(again, "welcome")
        assert back["portal_link"]["url"].startswith(chat.base + "/portal/")
        assert back["portal_link"]["label"] == "See my requests"
        await again.close()
    finally:
        await chat.http.close()


async def test_no_link_when_the_portal_is_off(gateway_factory: Any, tmp_path: Path) -> None:
    chat = await _chat(gateway_factory, tmp_path, enabled=False)
    try:
        ws = await chat.connect()
        await ws.send_json({"type": "hello", "token": None})
        await _frame(ws, "welcome")
        await ws.send_json({"type": "message", "client_id": "m1", "text": "hello"})
        await _frame(ws, "ack")
        await ws.close()
        _, welcome = await chat.visitor()
        assert welcome["portal"] is False and welcome["portal_link"] is None
    finally:
        await chat.http.close()
