"""The widget's WebSocket, spoken directly: origins, handshake, tokens, limits, delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from connectors.webchat import WebchatConnector
from connectors.webchat.tokens import TokenSigner
from tests.gateway.conftest import agent_token, wait_for
from tests.webchat.conftest import CHANNEL, SECRET, Chat, receive

MakeChat = Callable[..., Awaitable[Chat]]


async def test_widget_script_and_pages_are_served_with_safe_headers(chat: Chat) -> None:
    async with chat.http.get(f"{chat.base}/webchat/{CHANNEL}/widget.js") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/javascript; charset=utf-8"
        body = await resp.text()
        assert "attachShadow" in body
        assert "innerHTML" not in body
    for path, kind in (
        ("/", "text/html"),
        ("/console", "text/html"),
        ("/console/console.js", "application/javascript"),
        ("/console/console.css", "text/css"),
    ):
        async with chat.http.get(chat.base + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"].startswith(kind), path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            if kind == "text/html":
                csp = resp.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                page = await resp.text()
                assert "<script>" not in page  # no inline script at all
    async with chat.http.get(chat.base + "/") as resp:
        assert f'src="/webchat/{CHANNEL}/widget.js"' in await resp.text()
    async with chat.http.get(chat.base + "/console/secrets.txt") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_forbidden_origin_is_refused_before_the_upgrade(chat: Chat) -> None:
    for origin in ("http://evil.example", f"{chat.base}.evil.example", None):
        headers = {} if origin is None else {"Origin": origin}
        async with chat.http.get(
            chat.ws_url,
            headers={
                **headers,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as resp:
            assert resp.status == 403, origin
            assert (await resp.json())["error"]["code"] == "forbidden_origin"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await chat.http.ws_connect(chat.ws_url, origin="http://evil.example")
    assert info.value.status == 403
    _, welcome = await chat.visitor()  # the allowed origin still works
    assert welcome["visitor_id"].startswith("v_")


async def test_a_socket_that_never_says_hello_is_closed(make_chat: MakeChat) -> None:
    chat = await make_chat(handshake_timeout=0.5)
    ws = await chat.connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4408
    assert 0.4 < loop.time() - started < 3
    # A first frame that is not a hello is refused too.
    ws = await chat.connect()
    await ws.send_json({"type": "message", "client_id": "x", "text": "hi"})
    await ws.receive(timeout=5)
    assert ws.close_code == 4400


async def test_tokens_resume_the_visitor_and_a_tampered_one_gets_a_new_visitor(
    chat: Chat,
) -> None:
    ws, first = await chat.visitor()
    await ws.send_json({"type": "message", "client_id": "m1", "text": "remember me"})
    assert (await receive(ws))["type"] == "ack"
    await ws.close()

    _, again = await chat.visitor(first["token"])
    assert again["visitor_id"] == first["visitor_id"]
    assert again["renewed"] is False
    assert [m["text"] for m in again["history"]] == ["remember me"]

    body, mac = first["token"].split(".")
    forged_id = TokenSigner(b"not-the-secret-at-all").mint(first["visitor_id"])
    for tampered in (
        body + "." + mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1],
        forged_id,  # the right visitor id, signed with another key
        "garbage",
        "",
    ):
        _, fresh = await chat.visitor(tampered)
        assert fresh["visitor_id"] != first["visitor_id"]
        assert fresh["renewed"] is True
        assert fresh["history"] == []
        assert TokenSigner(SECRET.encode()).verify(fresh["token"]) is not None


async def test_oversized_messages_and_bursts_get_error_frames_and_the_gateway_stays_up(
    make_chat: MakeChat,
) -> None:
    chat = await make_chat(max_message_chars=50, rate_per_minute=5)
    ws, welcome = await chat.visitor()
    await ws.send_json({"type": "message", "client_id": "big", "text": "x" * 51})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "too_long"
    assert error["client_id"] == "big"
    assert "at most 50" in error["message"]

    for i in range(8):
        await ws.send_json({"type": "message", "client_id": f"b{i}", "text": f"burst {i}"})
    frames = [await receive(ws) for _ in range(8)]
    assert [f["type"] for f in frames] == ["ack"] * 5 + ["error"] * 3
    assert {f["code"] for f in frames[5:]} == {"rate_limited"}
    assert all(f["retry_after"] >= 1 for f in frames[5:])
    # Reconnecting does not reset the limit.
    again, _ = await chat.visitor(welcome["token"])
    await again.send_json({"type": "message", "client_id": "b9", "text": "after reconnect"})
    assert (await receive(again))["code"] == "rate_limited"

    # Junk and a frame far beyond any message: errors, then a close — never a crash.
    await ws.send_str("not json")
    assert (await receive(ws))["code"] == "invalid_frame"
    await ws.send_str('{"type": "message", "client_id": "huge", "text": "' + "y" * 100_000 + '"}')
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009

    conv = (await chat.conversations())[0]
    texts = [m["text"] for m in await chat.messages(conv["id"])]
    assert texts == [f"burst {i}" for i in range(5)]
    status, body = await chat.api.call("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    _, welcome = await chat.visitor()
    assert welcome["type"] == "welcome"


async def test_a_resent_client_id_is_stored_once(chat: Chat) -> None:
    ws, welcome = await chat.visitor()
    await ws.send_json({"type": "message", "client_id": "dup-1", "text": "only once"})
    first = await receive(ws)
    await ws.close()
    ws, _ = await chat.visitor(welcome["token"])  # reconnect, resend the same client id
    await ws.send_json({"type": "message", "client_id": "dup-1", "text": "only once"})
    second = await receive(ws)
    assert first["type"] == second["type"] == "ack"
    assert second["duplicate"] is True
    assert second["message_id"] == first["message_id"]
    texts = [m["text"] for m in await chat.messages(first["conversation_id"])]
    assert texts == ["only once"]


async def test_replies_and_typing_reach_every_tab_of_the_visitor(chat: Chat) -> None:
    tab1, welcome = await chat.visitor()
    tab2, again = await chat.visitor(welcome["token"])
    assert again["visitor_id"] == welcome["visitor_id"]
    other, _ = await chat.visitor()  # another visitor hears nothing of it

    await tab1.send_json({"type": "message", "client_id": "t1", "text": "hello from tab 1"})
    ack = await receive(tab1)
    echo = await receive(tab2)
    assert echo["type"] == "message" and echo["direction"] == "in"
    assert echo["text"] == "hello from tab 1" and echo["client_id"] == "t1"

    conv = await chat.assigned()
    token = agent_token(conv["assignee"])
    # The visitor types: the agent sees it on the event stream.
    async with chat.http.ws_connect(f"{chat.base}/v1/events?access_token={token}") as events:
        await tab1.send_json({"type": "typing", "typing": True})
        while True:
            event = await receive(events)
            if event["type"] == "conversation.typing":
                break
        assert event["data"] == {
            "conversation_id": ack["conversation_id"],
            "from": "contact",
            "typing": True,
        }
    # The agent types, then replies: both tabs see both.
    status, _ = await chat.api.call(
        "POST", f"/v1/conversations/{conv['id']}/typing", token=token, json={"typing": True}
    )
    assert status == 202
    for tab in (tab1, tab2):
        assert await receive(tab) == {"type": "typing", "typing": True}
    status, _ = await chat.api.call(
        "POST", f"/v1/conversations/{conv['id']}/messages", token=token, json={"text": "hi!"}
    )
    assert status == 202
    for tab in (tab1, tab2):
        frame = await receive(tab)
        assert frame["type"] == "message" and frame["direction"] == "out"
        assert frame["text"] == "hi!"
    with pytest.raises(asyncio.TimeoutError):
        await other.receive(timeout=0.3)

    # A reply while the visitor has no tab open is still sent, and restored on the next visit.
    await tab1.close()
    await tab2.close()
    connector = chat.gw.connectors["webchat"]
    assert isinstance(connector, WebchatConnector)
    await wait_for(lambda: connector.connected_visitors() == 1)
    await chat.api.call(
        "POST", f"/v1/conversations/{conv['id']}/messages", token=token, json={"text": "later"}
    )

    async def sent() -> bool:
        return any(
            m["text"] == "later" and m["status"] == "sent" for m in await chat.messages(conv["id"])
        )

    await wait_for(sent)
    _, back = await chat.visitor(welcome["token"])
    assert [(m["direction"], m["text"]) for m in back["history"]] == [
        ("in", "hello from tab 1"),
        ("out", "hi!"),
        ("out", "later"),
    ]


async def test_too_many_tabs_are_refused_and_others_keep_working(make_chat: MakeChat) -> None:
    chat = await make_chat(max_sockets_per_visitor=2)
    _ws1, welcome = await chat.visitor()
    ws2, _ = await chat.visitor(welcome["token"])
    ws3 = await chat.connect()
    await ws3.send_json({"type": "hello", "token": welcome["token"]})
    error = await receive(ws3)
    assert error["code"] == "too_many_connections"
    await ws3.receive(timeout=5)
    assert ws3.close_code == 4429
    await ws2.send_json({"type": "message", "client_id": "ok", "text": "still fine"})
    assert (await receive(ws2))["type"] == "ack"


async def test_prechat_profile_is_validated_and_shared_with_every_tab(chat: Chat) -> None:
    ws, welcome = await chat.visitor()
    tab2, _ = await chat.visitor(welcome["token"])
    await ws.send_json({"type": "profile", "name": "Ann", "email": "not-an-email"})
    assert (await receive(ws))["code"] == "invalid_profile"
    await ws.send_json({"type": "profile", "name": "  Ann   Lee ", "email": "Ann@Example.org"})
    for tab in (ws, tab2):
        frame = await receive(tab)
        assert frame == {
            "type": "profile",
            "profile": {"name": "Ann Lee", "email": "ann@example.org"},
        }
    _, again = await chat.visitor(welcome["token"])
    assert again["profile"] == {"name": "Ann Lee", "email": "ann@example.org"}


def test_settings_refuse_what_would_be_unsafe() -> None:
    from pydantic import ValidationError

    from connectors.webchat import WebchatSettings

    ok = WebchatSettings.model_validate(
        {"secret": SECRET, "allowed_origins": ["https://Shop.Example.com/"]}
    )
    assert ok.allowed_origins == ["https://shop.example.com"]
    for bad in (
        {"secret": "short", "allowed_origins": ["https://a.example"]},
        {"secret": SECRET, "allowed_origins": []},
        {"secret": SECRET, "allowed_origins": ["https://a.example/path"]},
        {"secret": SECRET, "allowed_origins": ["a.example"]},
        {"secret": SECRET, "allowed_origins": ["https://a.example"], "colour": "red"},
    ):
        with pytest.raises(ValidationError):
            WebchatSettings.model_validate(bad)
