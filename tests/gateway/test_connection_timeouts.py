"""Header and idle timeouts, long-lived streams, and the caps behind a trusted proxy, on an
in-process gateway (issue 9)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.conftest import ADMIN, CHANNEL, Client, base_config

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """(what the server still sent, seconds until it closed the connection)."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 10)
    return data, time.monotonic() - started


async def dropped(client: Client) -> dict[str, float]:
    """switchboard_connections_dropped_total by reason, from /metrics."""
    status, text = await client.call("GET", "/metrics")
    assert status == 200
    prefix = 'switchboard_connections_dropped_total{reason="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in str(text).splitlines()
        if line.startswith(prefix)
    }


async def test_idle_and_stalled_connections_are_closed_after_their_timeouts(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"].update(header_timeout=0.5, idle_timeout="2s")
    gw, client = await gateway_factory(cfg)
    before = await dropped(client)

    # A kept-alive connection is served, then closed once idle for idle_timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(HEAD + b"\r\n")
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
    writer.write(HEAD + b"\r\n")  # and it keeps serving while used
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
    rest, idle = await until_closed(reader)
    assert rest == b"" and 1.7 < idle < 3.5, idle
    writer.close()

    # A head that never completes gets 408 and is closed after header_timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(HEAD)
    answer, stalled = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408") and 0.4 < stalled < 1.5, (answer, stalled)
    writer.close()

    # On a kept-alive connection the header timeout runs from the first byte of the next
    # request, not the idle timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(HEAD + b"\r\n")
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.3)
    writer.write(b"GET /healthz HTT")
    answer, stalled = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408") and stalled < 1.3, (answer, stalled)
    writer.close()

    # And an operator can see it on /metrics.
    after = await dropped(client)
    assert after.get("header_timeout", 0) - before.get("header_timeout", 0) >= 2, after


async def test_event_streams_outlive_the_header_and_idle_timeouts(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"].update(header_timeout=0.3, idle_timeout=0.3)
    _, client = await gateway_factory(cfg)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{client.base}/v1/events", headers=auth)
        sse = await http.get(
            f"{client.base}/v1/events", headers=auth | {"Accept": "text/event-stream"}
        )
        assert sse.status == 200
        await asyncio.sleep(1.5)  # five times either timeout
        status, _ = await client.inbound("late-1", "still there?")  # pooled, then idle-closed
        assert status == 202
        types = []
        while "message.received" not in types:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            types.append(json.loads(msg.data)["type"])
        chunk = b""
        while b"message.received" not in chunk:
            chunk += await asyncio.wait_for(sse.content.readany(), 5)
        sse.close()
        await ws.close()


async def sse_status(http: aiohttp.ClientSession, url: str, forwarded: str) -> Any:
    """Open an event stream as the client `forwarded` names; the open response, or the
    status it was refused with (0 when the connection was refused before any answer)."""
    try:
        resp = await http.get(
            url,
            headers={
                "Authorization": f"Bearer {ADMIN}",
                "Accept": "text/event-stream",
                "X-Forwarded-For": forwarded,
            },
        )
    except aiohttp.ClientConnectionError:
        return 0
    if resp.status != 200:
        status = resp.status
        resp.release()
        return status
    return resp


async def test_behind_a_trusted_proxy_each_forwarded_client_is_capped_not_the_proxy(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"].update(max_connections_per_client=2, trusted_proxies=["127.0.0.1/32"])
    cfg["channels"].append(
        {
            "name": "webchat",
            "type": "webchat",
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": ["*"],
            "max_sockets_per_address": 1,
        }
    )
    _, client = await gateway_factory(cfg)
    events = f"{client.base}/v1/events"
    proxy = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    direct = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.2", 0))
    )
    held: list[Any] = []
    try:
        # Through the proxy: two streams for one client, the third refused with 429 and
        # the JSON error; another client still gets in, over the same proxy address.
        held += [await sse_status(proxy, events, "198.51.100.1, 203.0.113.7") for _ in range(2)]
        assert all(not isinstance(r, int) for r in held), held
        refused = await proxy.get(
            events,
            headers={"Authorization": f"Bearer {ADMIN}", "X-Forwarded-For": "203.0.113.7"},
        )
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "too_many_connections"
        assert refused.headers["Retry-After"]
        other = await sse_status(proxy, events, "203.0.113.8")
        assert not isinstance(other, int)
        held.append(other)

        # The chat sees the forwarded client as its address.
        url = f"{client.base}/webchat/webchat/ws"
        ws_a = await proxy.ws_connect(url, headers={"X-Forwarded-For": "203.0.113.20"})
        try:
            await proxy.ws_connect(url, headers={"X-Forwarded-For": "203.0.113.20"})
            raise AssertionError("a second chat socket for one address was accepted")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
        ws_b = await proxy.ws_connect(url, headers={"X-Forwarded-For": "203.0.113.21"})
        await ws_a.close()
        await ws_b.close()

        # A peer that is not a trusted proxy cannot pick its address: two connections
        # from 127.0.0.2 fill its share whatever X-Forwarded-For says.
        held += [await sse_status(direct, events, f"192.0.2.{i}") for i in (1, 2)]
        assert all(not isinstance(r, int) for r in held), held
        assert await sse_status(direct, events, "192.0.2.3") in (0, 429)
    finally:
        for resp in held:
            if not isinstance(resp, int):
                resp.close()
        await proxy.close()
        await direct.close()


async def test_a_stalled_request_body_is_abandoned_but_a_slow_one_is_served(
    gateway_factory: Any, tmp_path: Path, caplog: Any
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"].update(body_timeout=0.5)
    gw, _ = await gateway_factory(cfg)
    body = json.dumps(
        {"external_id": "slow-1", "text": "a message typed slowly", "from": {"id": "c1"}}
    ).encode()
    head = (
        f"POST /v1/channels/api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {CHANNEL}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    # A body that stops arriving: the connection is closed after body_timeout, quietly.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(head + body[:10])
    rest, stalled = await until_closed(reader)
    assert b" 202 " not in rest and 0.4 < stalled < 1.8, (rest, stalled)
    writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records

    # A body that keeps arriving, slower in total than body_timeout, is served.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(head)
    for i in range(0, len(body), 8):
        writer.write(body[i : i + 8])
        await asyncio.sleep(0.15)
    assert (await read_response(reader)).startswith(b"HTTP/1.1 202")
    writer.close()
