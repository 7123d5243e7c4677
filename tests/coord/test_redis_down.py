"""Redis killed mid-load and started again (issue 11): ingest keeps working on PostgreSQL,
instances wake each other by polling the log meanwhile, `/readyz` says `degraded` then `ok`,
nothing acknowledged is lost and the backlog drains."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gateway.api.stream as stream_module
from gateway.app import Gateway
from tests.coord.test_fanout import Visitor, chats, cluster_config
from tests.gateway.conftest import ADMIN, Client, Receiver, agent_token, wait_for
from tests.redisserver import own_server

MakeGateway = Callable[..., Awaitable[tuple[Gateway, Client]]]


async def coordination(client: Client) -> str:
    status, body = await client.call("GET", "/readyz")
    assert status == 200, body  # never unready for Redis
    return str(body["coordination"])


@pytest.mark.timeout(240)
async def test_redis_killed_mid_load_loses_nothing_and_the_backlog_drains(
    gateway_factory: MakeGateway,
    receiver: Receiver,
    tmp_path: Path,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(stream_module, "POLL_INTERVAL", 30.0)  # only wake-ups count
    redis = own_server()
    try:
        cfg = cluster_config(tmp_path, pg_dsn, redis.url, receiver.url)
        gw_a, a = await gateway_factory(cfg)
        _, b = await gateway_factory(cfg)
        http = aiohttp.ClientSession()
        visitor = Visitor(b.base, http)
        seen: list[dict[str, Any]] = []
        stream = await http.ws_connect(f"{b.base}/v1/events?access_token={ADMIN}")

        async def read_stream() -> None:
            async for msg in stream:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    seen.append(json.loads(msg.data))

        reader = asyncio.create_task(read_stream())
        try:
            await visitor.connect()
            await visitor.say("v1", "My order is late")
            conv_id = (await wait_for(lambda: chats(b)))[0]["id"]
            conv = await wait_for(lambda: a.assigned(conv_id))
            acked: list[str] = []

            async def load(n: int, start: int) -> None:
                for i in range(start, start + n):
                    client = (a, b)[i % 2]
                    status, body = await client.inbound(f"load-{i}", f"msg {i}", sender=f"s{i}")
                    assert status == 202, body  # ingest keeps working, Redis or not
                    acked.append(f"load-{i}")

            await load(20, 0)
            with caplog.at_level(logging.INFO, logger="switchboard.coord"):
                redis.kill()
                loading = asyncio.create_task(load(40, 20))
                for client in (a, b):
                    await wait_for(lambda c=client: _is(coordination(c), "degraded"), timeout=15)
                # A reply made on A for the visitor on B while Redis is down.
                status, reply = await a.call(
                    "POST",
                    f"/v1/conversations/{conv_id}/messages",
                    token=agent_token(conv["assignee"]),
                    json={"text": "Sorry, it ships tomorrow"},
                )
                assert status == 202, reply
                await loading
                # Events committed on A reach B's stream by polling meanwhile.
                await wait_for(lambda: _received(seen) >= set(acked), timeout=15)
                await asyncio.sleep(1.5)
                redis.start()
                for client in (a, b):
                    await wait_for(lambda c=client: _is(coordination(c), "ok"), timeout=15)
                await load(10, 60)
            # The backlog drained: the reply reached the visitor on B, once, and is sent.
            await wait_for(lambda: "Sorry, it ships tomorrow" in visitor.replies(), timeout=20)
            await wait_for(lambda: a.message_with_status(conv_id, reply["id"], "sent"), timeout=20)
            await wait_for(lambda: _received(seen) >= set(acked), timeout=10)
            # Nothing acknowledged lost, nothing stored twice.
            events = await gw_a.store.events_since(0, 100_000)
            stored = Counter(
                e.data["message"]["external_id"]
                for e in events
                if e.type == "message.received" and e.data["message"].get("external_id")
            )
            assert {k for k in stored if k.startswith("load-")} == set(acked)
            assert all(stored[k] == 1 for k in acked)
            assigned = Counter(
                e.data["conversation_id"] for e in events if e.type == "conversation.assigned"
            )
            assert all(count == 1 for count in assigned.values())
            ids = [e["id"] for e in seen if e["id"] is not None]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
            await asyncio.sleep(0.5)
            assert visitor.replies().count("Sorry, it ships tomorrow") == 1
            # Said once per instance when Redis went, once when it came back (each
            # instance logs its own): not once per event.
            records = [r for r in caplog.records if r.name == "switchboard.coord"]
            went = [r for r in records if "Redis unreachable" in r.getMessage()]
            back = [r for r in records if "reachable again" in r.getMessage()]
            assert len(went) == 2 and len(back) == 2, [r.getMessage() for r in records]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.close()
            await visitor.close()
            await http.close()
    finally:
        redis.close()


async def _is(value: Awaitable[str], wanted: str) -> bool:
    return await value == wanted


def _received(seen: list[dict[str, Any]]) -> set[str]:
    return {
        e["data"]["message"].get("external_id") for e in seen if e["type"] == "message.received"
    }


@pytest.mark.timeout(180)
async def test_a_chat_reply_for_a_socket_elsewhere_waits_for_redis_and_is_not_given_up(
    gateway_factory: MakeGateway, tmp_path: Path, pg_dsn: str
) -> None:
    """Only A's outbox runs; the visitor's socket is on B. With Redis down A cannot reach B:
    the reply stays queued (not `sent`, not `failed` after max_attempts: 4 in this config),
    and is written on B's socket once Redis is back."""
    redis = own_server()
    try:
        cfg = cluster_config(tmp_path, pg_dsn, redis.url)
        _, a = await gateway_factory(cfg)
        gw_b, b = await gateway_factory(cfg)
        await gw_b.outbox.stop(1.0)  # so A's outbox is the one that sends
        async with aiohttp.ClientSession() as http:
            visitor = Visitor(b.base, http)
            try:
                await visitor.connect()
                await visitor.say("v1", "Hello?")
                conv_id = (await wait_for(lambda: chats(a)))[0]["id"]
                conv = await wait_for(lambda: a.assigned(conv_id))
                redis.kill()
                await wait_for(lambda: _is(coordination(a), "degraded"), timeout=15)
                status, reply = await a.call(
                    "POST",
                    f"/v1/conversations/{conv_id}/messages",
                    token=agent_token(conv["assignee"]),
                    json={"text": "Here I am"},
                )
                assert status == 202
                await asyncio.sleep(4)  # many times base_delay x max_attempts
                current = await a.conversation(conv_id)
                state = next(m for m in current["messages"] if m["id"] == reply["id"])
                assert state["status"] == "queued", state
                assert visitor.replies() == []
                redis.start()
                await wait_for(lambda: "Here I am" in visitor.replies(), timeout=20)
                await wait_for(
                    lambda: a.message_with_status(conv_id, reply["id"], "sent"), timeout=10
                )
                assert visitor.replies() == ["Here I am"]
            finally:
                await visitor.close()
    finally:
        redis.close()
