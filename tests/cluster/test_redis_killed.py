"""Redis SIGKILLed and started again under three `switchboard run` processes while customers
write through the `api` channel and the web chat.

What a user notices: nothing is refused and nothing acknowledged is lost while Redis is
gone (the instances serve from PostgreSQL and poll it instead of being woken); `/readyz`
stays ready and says `coordination: degraded`; once Redis is back the backlog drains —
every conversation routed, every reply queued meanwhile delivered, and a chat reply made on
an instance that does not hold the visitor's socket reaches the visitor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.cluster import (
    Cluster,
    Load,
    SlowReceiver,
    capacity_replay,
    cluster_config,
    frame,
    reply,
    until,
)
from tests.cluster.servers import half_written, query, readyz
from tests.gateway.test_e2e_daemon import free_port
from tests.redisserver import own_server

API_MESSAGES = 1_500
WHILE_DOWN = 300  # of which sent only once Redis is known to be down
API_SENDERS = 300
VISITORS = 15
CHAT_MESSAGES = 6
CAPACITY = {"api": 100, "webchat": 10}  # room for every conversation: all get routed


@pytest.mark.timeout(420)
async def test_redis_killed_and_restarted_mid_load(tmp_path: Path, pg_dsn: str) -> None:
    redis = own_server()
    receiver = SlowReceiver(delay=0.05)
    await receiver.start()
    cluster = Cluster(
        tmp_path,
        [
            cluster_config(pg_dsn, redis.url, free_port(), receiver.url, 4, CAPACITY)
            for _ in range(3)
        ],
    )
    try:
        await cluster.start()
        async with aiohttp.ClientSession() as http:
            # A visitor on instance 2, whose replies will be written on instance 0.
            watcher = await http.ws_connect(
                f"{cluster.bases[2]}/webchat/webchat/ws", origin="http://shop.test"
            )
            await watcher.send_json({"type": "hello", "token": None})
            await frame(watcher, "welcome")
            await watcher.send_json({"type": "message", "client_id": "w1", "text": "hi there"})
            watched = (await frame(watcher, "ack"))["conversation_id"]
            # The visitor's browser keeps reading its socket (and answering pings).
            heard: list[dict[str, Any]] = []

            async def listen() -> None:
                async for msg in watcher:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        heard.append(json.loads(msg.data))

            listening = asyncio.create_task(listen())

            load = Load(cluster, http)
            jobs = [(f"r{n}", f"rcust-{n % API_SENDERS}") for n in range(API_MESSAGES)]
            before, during = jobs[:-WHILE_DOWN], jobs[-WHILE_DOWN:]
            traffic = asyncio.gather(
                load.providers(before, workers=16),
                *(load.visitor(v, CHAT_MESSAGES, pause=0.5) for v in range(VISITORS)),
            )

            async def some_in() -> bool:
                return len(load.accepted) >= 300

            await until(some_in, 120)

            # --- Redis dies ------------------------------------------------------------
            redis.kill()

            async def degraded() -> bool:
                status, body = await readyz(http, cluster.bases[0])
                assert status == 200 and body["ready"] is True, body  # still serving
                return bool(body["coordination"] == "degraded")

            await until(degraded, 30)
            # Replies made meanwhile: to api customers, and to the watcher's chat from
            # an instance that does not hold its socket.
            rows = await query(
                pg_dsn,
                "SELECT id FROM conversations WHERE channel_kind='api' ORDER BY created_at"
                " LIMIT 30",
            )
            replies = [await reply(http, cluster.bases[1], r["id"], "On it") for r in rows]
            chat_reply = await reply(http, cluster.bases[0], watched, "Hello from instance 0")
            # Customers keep writing while Redis is gone: every message is taken.
            await asyncio.wait_for(load.providers(during, workers=8), 120)
            assert {ext for ext, _ in during} <= load.accepted.keys()
            _, body = await readyz(http, cluster.bases[0])
            assert body["coordination"] == "degraded", "Redis came back by itself?"

            # --- Redis is back ---------------------------------------------------------
            redis.start()

            async def coordinated() -> bool:
                bodies = [await readyz(http, b) for b in cluster.bases]
                return all(body["coordination"] == "ok" for _, body in bodies)

            await until(coordinated, 30)
            await asyncio.wait_for(traffic, 300)

            # The chat reply reaches the visitor's socket on instance 2, once.
            async def reply_heard() -> bool:
                return any(f.get("id") == chat_reply for f in heard)

            await until(reply_heard, 30)
            outs = [f for f in heard if f["type"] == "message" and f.get("direction") == "out"]
            assert [(f["id"], f["text"]) for f in outs] == [(chat_reply, "Hello from instance 0")]
            await watcher.close()
            await listening

            # Nothing acknowledged lost, nothing twice.
            rows = await query(pg_dsn, "SELECT external_id, id FROM messages WHERE direction='in'")
            stored: dict[str, list[str]] = {}
            for row in rows:
                stored.setdefault(row["external_id"], []).append(row["id"])
            acknowledged = {**load.accepted, **load.chat_acked}
            assert len(acknowledged) == API_MESSAGES + VISITORS * CHAT_MESSAGES
            assert {k: [v] for k, v in acknowledged.items()} == {
                k: v for k, v in stored.items() if k in acknowledged
            }
            assert await half_written(pg_dsn) == dict.fromkeys(await half_written(pg_dsn), 0)

            # The backlog drains: every conversation routed once, every reply sent once.
            total = await query(pg_dsn, "SELECT count(*) AS n FROM conversations")

            async def all_routed() -> bool:
                assigned, _ = await capacity_replay(pg_dsn)
                return len(assigned) == total[0]["n"]

            await until(all_routed, 60)
            assigned, peak = await capacity_replay(pg_dsn)
            assert max(assigned.values()) == 1
            assert all(v <= CAPACITY[k[1]] for k, v in peak.items()), peak

            async def delivered() -> bool:
                return all(receiver.acknowledged[r] >= 1 for r in replies)

            await until(delivered, 60)
            assert {r: receiver.acknowledged[r] for r in replies} == dict.fromkeys(replies, 1)
    finally:
        cluster.stop()
        await receiver.stop()
        redis.close()
