"""Several gateway instances on one PostgreSQL and one Redis (issue 11): what is committed on
one wakes the others, and a chat reply reaches the socket wherever it is."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gateway.api.stream as stream_module
from gateway.app import Gateway
from tests.gateway.conftest import (
    ADMIN,
    Client,
    agent_token,
    base_config,
    wait_for,
)

ORIGIN = "http://shop.example"
SECRET = "test-webchat-secret-0123456789"

MakeGateway = Callable[..., Awaitable[tuple[Gateway, Client]]]


def cluster_config(
    tmp_path: Path, pg_dsn: str, redis_url: str, outbound_url: str = "http://127.0.0.1:9/none"
) -> dict[str, Any]:
    cfg = base_config(tmp_path / "unused.sqlite", outbound_url)
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    cfg["coordination"] = {"redis": redis_url, "prefix": "t1"}
    cfg["server"]["shutdown_timeout"] = 3
    cfg["channels"].append(
        {
            "name": "webchat",
            "type": "webchat",
            "secret": SECRET,
            "allowed_origins": [ORIGIN],
        }
    )
    return cfg


@pytest.fixture
def slow_stream_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream looks at the log by itself every 30 s only: what it shows within a second
    came from a wake-up."""
    monkeypatch.setattr(stream_module, "POLL_INTERVAL", 30.0)


async def stream_events(
    client: Client, seen: list[tuple[float, dict[str, Any]]], ready: asyncio.Event
) -> None:
    ws = await client.http.ws_connect(f"{client.base}/v1/events?access_token={ADMIN}")
    ready.set()
    try:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                seen.append((time.monotonic(), json.loads(msg.data)))
    finally:
        await ws.close()


@pytest.mark.usefixtures("slow_stream_poll")
async def test_an_event_committed_on_a_is_on_bs_stream_within_a_second(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    gw_a, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    seen: list[tuple[float, dict[str, Any]]] = []
    ready = asyncio.Event()
    reader = asyncio.create_task(stream_events(b, seen, ready))
    try:
        await ready.wait()
        await asyncio.sleep(0.2)
        committed: dict[str, float] = {}
        for n in range(5):
            committed[f"fan-{n}"] = time.monotonic()
            status, body = await a.inbound(f"fan-{n}", f"Question {n}", sender=f"c{n}")
            assert status == 202, body
            await asyncio.sleep(0.3)

        def arrived() -> bool:
            texts = {
                e["data"]["message"]["external_id"]
                for _, e in seen
                if e["type"] == "message.received"
            }
            return texts >= set(committed)

        await wait_for(arrived, timeout=5)
        for _, event in seen:
            if event["type"] == "message.received":
                ext = event["data"]["message"]["external_id"]
                at = next(t for t, e in seen if e is event)
                assert at - committed[ext] < 1.0, (ext, at - committed[ext])
        # The same events, in the log's order, none twice, none skipped.
        ids = [e["id"] for _, e in seen if e["id"] is not None]
        assert ids == sorted(ids) and len(ids) == len(set(ids))
        stored = [e.id for e in await gw_a.store.events_since(ids[0] - 1, 1000)]
        assert ids == stored[: len(ids)]
        status, ready_b = await b.call("GET", "/readyz")
        assert status == 200 and ready_b["coordination"] == "ok"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_typing_reaches_bs_stream(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """A live-only event (an agent typing on A) is on B's stream though it is never stored."""
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    _, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    status, body = await a.inbound("t-1", "hello", sender="typer")
    conv_id = body["conversation_id"]
    await wait_for(lambda: a.assigned(conv_id))
    conv = await a.conversation(conv_id)
    seen: list[tuple[float, dict[str, Any]]] = []
    ready = asyncio.Event()
    reader = asyncio.create_task(stream_events(b, seen, ready))
    try:
        await ready.wait()
        await asyncio.sleep(0.2)
        status, _ = await a.call(
            "POST",
            f"/v1/conversations/{conv_id}/typing",
            token=agent_token(conv["assignee"]),
            json={"typing": True},
        )
        assert status in (200, 202, 204)
        await wait_for(lambda: any(e["type"] == "conversation.typing" for _, e in seen), timeout=3)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def chats(client: Client) -> list[dict[str, Any]]:
    status, body = await client.call("GET", "/v1/conversations?channel=webchat")
    assert status == 200, body
    return list(body["conversations"])


class Visitor:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(f"{self.base}/webchat/webchat/ws", origin=ORIGIN)
        await self.ws.send_json({"type": "hello", "token": token})
        msg = await self.ws.receive(timeout=5)
        welcome: dict[str, Any] = json.loads(msg.data)
        assert welcome["type"] == "welcome", welcome
        self._task = asyncio.create_task(self._read())
        return welcome

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    async def say(self, client_id: str, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_json({"type": "message", "client_id": client_id, "text": text})
        await wait_for(
            lambda: any(f["type"] == "ack" and f.get("client_id") == client_id for f in self.frames)
        )

    def replies(self) -> list[str]:
        return [
            f["text"] for f in self.frames if f["type"] == "message" and f["direction"] == "out"
        ]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def visitors() -> AsyncIterator[Callable[[str], Visitor]]:
    http = aiohttp.ClientSession()
    made: list[Visitor] = []

    def make(base: str) -> Visitor:
        v = Visitor(base, http)
        made.append(v)
        return v

    yield make
    for v in made:
        await v.close()
    await http.close()


async def test_a_reply_made_on_a_reaches_a_visitor_connected_to_b(
    gateway_factory: MakeGateway,
    tmp_path: Path,
    pg_dsn: str,
    redis_url: str,
    visitors: Callable[[str], Visitor],
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    _, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    visitor = visitors(b.base)
    await visitor.connect()
    await visitor.say("c1", "Where is my parcel?")
    convs = await wait_for(lambda: chats(b))
    conv_id = convs[0]["id"]
    conv = await wait_for(lambda: a.assigned(conv_id))
    texts = [f"Reply {n} from instance A" for n in range(6)]
    ids = []
    for text in texts:
        status, msg = await a.call(
            "POST",
            f"/v1/conversations/{conv_id}/messages",
            token=agent_token(conv["assignee"]),
            json={"text": text},
        )
        assert status == 202, msg
        ids.append(msg["id"])
    await wait_for(lambda: len(visitor.replies()) >= len(texts), timeout=10)
    assert sorted(visitor.replies()) == sorted(texts)
    for msg_id in ids:
        await wait_for(lambda m=msg_id: a.message_with_status(conv_id, m, "sent"), timeout=10)
    await asyncio.sleep(0.5)
    assert len(visitor.replies()) == len(texts)  # each once


async def test_a_reply_to_a_visitor_connected_nowhere_is_sent_and_shown_on_return(
    gateway_factory: MakeGateway,
    tmp_path: Path,
    pg_dsn: str,
    redis_url: str,
    visitors: Callable[[str], Visitor],
) -> None:
    """Today's single-instance rule holds in a cluster: with no socket open anywhere the
    reply is `sent` (every instance said it holds none), and the next connect shows it."""
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    _, a = await gateway_factory(cfg)
    _, b = await gateway_factory(cfg)
    visitor = visitors(b.base)
    welcome = await visitor.connect()
    await visitor.say("c1", "Hello?")
    convs = await wait_for(lambda: chats(b))
    conv_id = convs[0]["id"]
    conv = await wait_for(lambda: a.assigned(conv_id))
    await visitor.close()
    status, msg = await a.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": "Answer while away"},
    )
    assert status == 202
    await wait_for(lambda: a.message_with_status(conv_id, msg["id"], "sent"), timeout=10)
    again = visitors(b.base)
    back = await again.connect(welcome["token"])
    assert "Answer while away" in [m["text"] for m in back["history"]]


async def test_every_instance_is_woken_once_by_every_event_wherever_it_was_committed(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """Each instance's bus (what wakes its routing, outbox, webhooks, deadlines and
    streams) carries every committed event once: its own as it commits them, the others'
    read from the log."""
    cfg = cluster_config(tmp_path, pg_dsn, redis_url)
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    heard: dict[str, Counter[int]] = {"a": Counter(), "b": Counter()}
    gw_a.bus.listen(lambda e: heard["a"].update([e.id]) if e.durable else None)
    gw_b.bus.listen(lambda e: heard["b"].update([e.id]) if e.durable else None)
    start = await gw_a.store.last_event_id()

    async def send(client: Client, n: int) -> None:
        status, body = await client.inbound(f"once-{n}", f"hello {n}", sender=f"o{n}")
        assert status == 202, body

    await asyncio.gather(*(send((a, b)[n % 2], n) for n in range(30)))

    async def all_heard() -> bool:
        stored = {e.id for e in await gw_a.store.events_since(start, 10_000)}
        return bool(stored) and set(heard["a"]) >= stored and set(heard["b"]) >= stored

    await wait_for(all_heard, timeout=10)
    await asyncio.sleep(1.0)
    for name, counts in heard.items():
        twice = {i: c for i, c in counts.items() if c > 1}
        assert not twice, (name, twice)
