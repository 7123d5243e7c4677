"""Three `switchboard run` processes on one PostgreSQL and one Redis, 5,000 customer
messages spread over all three through the `api` channel and the web chat, one instance
SIGKILLed mid-load and started again.

What must hold, checked in the database and the event log afterwards: every acknowledged
message stored once; every conversation assigned at most once, and as many assigned as the
agents have room for; no agent ever over capacity (the event log replayed); every reply an
agent queued delivered, acknowledged once by the receiver, including the ones the dead
instance held when it died (its outbox leases run out and another instance takes them)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp
import pytest

from tests.cluster.cluster import (
    Cluster,
    Load,
    SlowReceiver,
    capacity_replay,
    cluster_config,
    reply,
    until,
)
from tests.cluster.servers import half_written, query
from tests.gateway.test_e2e_daemon import free_port

API_SENDERS = 900  # api conversations (5 messages each)
API_MESSAGES = 4_500
VISITORS = 50  # chat conversations (10 messages each)
CHAT_MESSAGES = 10
AGENTS = 8
CAPACITY = {"api": 100, "webchat": 5}  # 800 api and 40 chat slots: both run full
REPLIES = 150
KILLED = 1


@pytest.mark.timeout(600)
async def test_three_instances_with_one_killed_mid_load(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    receiver = SlowReceiver(delay=0.5)
    await receiver.start()
    ports = [free_port() for _ in range(3)]
    cluster = Cluster(
        tmp_path,
        [cluster_config(pg_dsn, redis_url, port, receiver.url, AGENTS, CAPACITY) for port in ports],
    )
    try:
        await cluster.start()
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, force_close=False)
        ) as http:
            load = Load(cluster, http)
            jobs = [(f"e{n}", f"cust-{n % API_SENDERS}") for n in range(API_MESSAGES)]
            random.Random(11).shuffle(jobs)
            traffic = asyncio.gather(
                load.providers(jobs, workers=24),
                *(load.visitor(v, CHAT_MESSAGES, pause=0.3) for v in range(VISITORS)),
            )

            # Agents answer while the load runs, on the instances that stay up; the
            # killed one's outbox takes its share of the sending all the same.
            replies: list[str] = []

            async def answer() -> None:
                while len(replies) < REPLIES:
                    rows = await query(
                        pg_dsn,
                        "SELECT id FROM conversations WHERE channel_kind='api'"
                        " AND assignee IS NOT NULL ORDER BY created_at LIMIT $1",
                        REPLIES,
                    )
                    for row in rows[len(replies) :]:
                        base = cluster.bases[(len(replies) % 2) * 2]  # instance 0 or 2
                        replies.append(await reply(http, base, row["id"], "We are on it"))
                    await asyncio.sleep(0.5)

            answering = asyncio.create_task(answer())

            async def half_in() -> bool:
                return len(load.accepted) + len(load.chat_acked) >= 2_000

            await until(half_in, 240)
            await answering
            # A burst of replies made on the instance about to die, which its outbox
            # starts sending at once while the receiver stalls: it dies holding their
            # leases.
            doomed = instance_id(cluster.daemons[KILLED].log)
            receiver.gate.clear()
            burst = [
                await reply(http, cluster.bases[KILLED], conv, "One more thing")
                for conv in await assigned_api(pg_dsn, 40)
            ]
            replies += burst

            async def doomed_holds() -> bool:
                return bool(await held_by(pg_dsn, doomed))

            await until(doomed_holds, 60, every=0.05)
            held = await held_by(pg_dsn, doomed)
            cluster.kill(KILLED)
            receiver.gate.set()
            await asyncio.sleep(3)
            await cluster.restart(KILLED)
            await asyncio.wait_for(traffic, 400)

            # --- the load is in: check it ------------------------------------------------
            assert len(load.accepted) == API_MESSAGES
            assert len(load.chat_acked) == VISITORS * CHAT_MESSAGES
            rows = await query(
                pg_dsn, "SELECT external_id, id, channel FROM messages WHERE direction='in'"
            )
            stored: dict[str, list[str]] = {}
            for row in rows:
                stored.setdefault(row["external_id"], []).append(row["id"])
            acknowledged = {**load.accepted, **load.chat_acked}
            assert {k: [v] for k, v in acknowledged.items()} == {
                k: v for k, v in stored.items() if k in acknowledged
            }, "an acknowledged message missing, stored twice, or under another id"
            assert len(rows) == len(acknowledged)
            assert await half_written(pg_dsn) == dict.fromkeys(await half_written(pg_dsn), 0)

            # Routing fills every agent up to capacity, each conversation once.
            convs = await query(
                pg_dsn, "SELECT channel_kind, count(*) AS n FROM conversations GROUP BY 1"
            )
            per_kind = {r["channel_kind"]: r["n"] for r in convs}
            assert per_kind == {"api": API_SENDERS, "webchat": VISITORS}
            room = {kind: AGENTS * cap for kind, cap in CAPACITY.items()}

            async def routed() -> bool:
                assigned, _ = await capacity_replay(pg_dsn)
                return len(assigned) >= sum(min(room[k], per_kind[k]) for k in room)

            await until(routed, 60)
            await asyncio.sleep(2)  # a late double assignment would show now
            assigned, peak = await capacity_replay(pg_dsn)
            assert [c for c, n in assigned.items() if n > 1] == [], "assigned twice"
            assert len(assigned) == sum(min(room[k], per_kind[k]) for k in room)
            over = {k: v for k, v in peak.items() if v > CAPACITY[k[1]]}
            assert over == {}, f"over capacity: {over}"
            db_assigned = await query(
                pg_dsn, "SELECT count(*) AS n FROM conversations WHERE assignee IS NOT NULL"
            )
            assert db_assigned[0]["n"] == len(assigned)

            # Every queued reply delivered and acknowledged once, the dead one's included.
            async def delivered() -> bool:
                return all(receiver.acknowledged[r] >= 1 for r in replies)

            await until(delivered, 120)  # a dead holder's lease runs out after 33 s
            await asyncio.sleep(2)
            assert {r: receiver.acknowledged[r] for r in replies} == dict.fromkeys(replies, 1)
            sent = await query(
                pg_dsn,
                "SELECT count(*) AS n FROM messages WHERE id = ANY($1) AND status='sent'",
                replies,
            )
            assert sent[0]["n"] == len(replies)
            left = await query(
                pg_dsn, "SELECT count(*) AS n FROM outbox WHERE message_id = ANY($1)", replies
            )
            assert left[0]["n"] == 0
            # The dead instance's leases were taken over: what it held is sent by others.
            assert held and all(receiver.acknowledged[m] == 1 for m in held)
            print(
                f"retries {load.retries}; outbox items the killed instance held: {len(held)}; "
                "arrived twice (the sender died before the answer): "
                f"{sum(1 for r in replies if receiver.arrived[r] > 1)}"
            )
    finally:
        cluster.stop()
        await receiver.stop()


def instance_id(log: Path) -> str:
    """The instance id a daemon logged when it started (the holder of its leases)."""
    for line in reversed(log.read_text().splitlines()):
        if '"switchboard started"' in line:
            return str(json.loads(line)["instance"])
    raise AssertionError(f"no start in {log}")


async def held_by(dsn: str, holder: str) -> list[str]:
    rows = await query(dsn, "SELECT message_id FROM outbox WHERE holder=$1", holder)
    return [r["message_id"] for r in rows]


async def assigned_api(dsn: str, n: int) -> list[str]:
    rows = await query(
        dsn,
        "SELECT id FROM conversations WHERE channel_kind='api' AND assignee IS NOT NULL"
        " ORDER BY created_at DESC LIMIT $1",
        n,
    )
    return [r["id"] for r in rows]
