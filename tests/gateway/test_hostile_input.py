"""Malformed and hostile requests against the running gateway: each gets its precise 4xx
(or a WebSocket close code) at once, never a 500, a traceback or a hanging socket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.gateway.conftest import ADMIN, CHANNEL, Client, base_config, gateway_factory
from tests.standins.server import free_port
from tests.standins.telegram import WEBHOOK_SECRET, TelegramStandin
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, TwilioStandin

__all__ = ["gateway_factory"]

DEEP = ("[" * 5000 + "]" * 5000).encode()
DEEP_OBJECT = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
HUGE_INT = '{"external_id": "x", "text": "hi", "from": {"id": "c"}, "n": ' + "9" * 5000 + "}"


async def hostile_gateway(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, telegram: TelegramStandin
) -> Client:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["port"] = port
    cfg["channels"] += [
        {
            "name": "chat",
            "type": "webchat",
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": [base],
        },
        {
            "name": "sms",
            "type": "twilio_sms",
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "api_base_url": twilio.url,
            "webhook_base_url": base,
            "from_number": CHANNEL_NUMBER,
            "request_timeout": 3,
        },
        {
            "name": "tg",
            "type": "telegram",
            "token": telegram.token,
            "api_base_url": telegram.url,
            "mode": "webhook",
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_base_url": "https://support.example.com",
            "request_timeout": 3,
        },
    ]
    client: Client
    _, client = await gateway_factory(cfg)
    return client


async def raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes as one HTTP/1.1 request; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n")
        if body:
            writer.write(b"Content-Length: %d\r\n" % len(body))
        writer.write(b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    header_block, _, rest = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


def error_code(body: Any) -> str:
    assert isinstance(body, dict), body
    return str(body["error"]["code"])


async def test_deeply_nested_and_huge_number_json_get_400(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, telegram: TelegramStandin
) -> None:
    client = await hostile_gateway(gateway_factory, tmp_path, twilio, telegram)
    hdrs = {"Content-Type": "application/json"}
    targets = [
        ("/v1/routing/explain", ADMIN),
        ("/v1/conversations/cv_nothing/messages", ADMIN),
        ("/v1/channels/api/messages", CHANNEL),
    ]
    for path, token in targets:
        for body in (DEEP, DEEP_OBJECT, HUGE_INT.encode()):
            status, answer = await client.call("POST", path, token=token, data=body, headers=hdrs)
            assert status == 400, (path, body[:20], status, answer)
            assert error_code(answer) == "invalid_json"
            assert "nested" in answer["error"]["message"] or "digits" in answer["error"]["message"]

    hook = client.base + "/channels/tg/telegram/webhook"
    for body in (DEEP, DEEP_OBJECT, ('{"update_id": ' + "9" * 5000 + "}").encode()):
        async with client.http.post(
            hook,
            data=body,
            headers={**hdrs, "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        ) as resp:
            assert resp.status == 400, (body[:20], resp.status, await resp.text())
    # nothing was stored, and the gateway still answers well-formed requests
    status, page = await client.call("GET", "/v1/conversations")
    assert status == 200 and page["conversations"] == []


async def test_non_ascii_bytes_in_auth_headers_are_refused_not_500(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, telegram: TelegramStandin
) -> None:
    client = await hostile_gateway(gateway_factory, tmp_path, twilio, telegram)
    port = int(client.base.rsplit(":", 1)[1])
    host = b"Host: 127.0.0.1:%d" % port

    for path in (b"/v1/me", b"/v1/conversations"):
        status, _, body = await raw(
            port, b"GET " + path + b" HTTP/1.1\r\n" + host + b"\r\nAuthorization: Bearer t\xffken"
        )
        assert status == 401, (path, status, body)
        assert json.loads(body)["error"]["code"] == "unauthenticated"
    status, _, body = await raw(
        port,
        b"POST /v1/channels/api/messages HTTP/1.1\r\n" + host + b"\r\n"
        b"Authorization: Bearer \xc3\xa9\xff-channel-token\r\nContent-Type: application/json",
        b'{"external_id": "e1", "text": "hi", "from": {"id": "c"}}',
    )
    assert status == 401, body

    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "hello")
    form_body = urlencode(params).encode()
    status, _, body = await raw(
        port,
        b"POST /channels/sms/twilio/inbound HTTP/1.1\r\n" + host + b"\r\n"
        b"X-Twilio-Signature: \xff\xfeAAAA=\r\n"
        b"Content-Type: application/x-www-form-urlencoded",
        form_body,
    )
    assert status == 403, body

    # The chat socket is unauthenticated: a hostile Origin is refused before the upgrade.
    status, _, body = await raw(
        port,
        b"GET /webchat/chat/ws HTTP/1.1\r\n" + host + b"\r\n"
        b"Origin: http://127.0.0.1:\xff\xfe\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "forbidden_origin"

    # nothing stored, the gateway is fine
    status, page = await client.call("GET", "/v1/conversations")
    assert status == 200 and page["conversations"] == []


async def test_deeply_nested_chat_frame_closes_the_socket_at_once(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, telegram: TelegramStandin
) -> None:
    client = await hostile_gateway(gateway_factory, tmp_path, twilio, telegram)
    url = client.base + "/webchat/chat/ws"
    for first in (True, False):
        ws = await client.http.ws_connect(url, origin=client.base)
        if not first:
            await ws.send_json({"type": "hello", "token": None})
            welcome = json.loads((await ws.receive(timeout=5)).data)
            assert welcome["type"] == "welcome"
        started = time.monotonic()
        await ws.send_str('{"type": "message", "x": ' + "[" * 5000 + "]" * 5000 + "}")
        msg = await ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.TEXT:  # an error frame may come first
            msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE, (msg.type, msg.data)
        assert msg.data == 1007, msg.extra
        assert time.monotonic() - started < 3
        await ws.close()
    # a well-behaved visitor is still served
    ws = await client.http.ws_connect(url, origin=client.base)
    await ws.send_json({"type": "hello", "token": None})
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
    await ws.close()
