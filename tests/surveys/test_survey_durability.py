"""The survey timer is data in the store: `switchboard run` killed with SIGKILL before the
survey fell due sends it after the restart, and killed again right after it went out does
not send it twice; two firings at the same instant decide once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    Client,
    Receiver,
    base_config,
    config_text,
    gateway_factory,
    receiver,
    wait_for,
)
from tests.gateway.test_e2e_daemon import Daemon, free_port
from tests.surveys.conftest import OnBackend
from tests.surveys.helpers import Clock, decided, resolve, surveys

__all__ = ["gateway_factory", "receiver"]


def survey_bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [b for b in receiver.bodies() if "How satisfied" in str(b.get("text", ""))]


async def outcomes(cfg: dict[str, Any]) -> list[tuple[str]]:
    """The survey decisions in the daemon's database, read from outside it."""
    store = cfg["store"]
    if store.get("backend") == "postgres":
        conn = await asyncpg.connect(store["dsn"])
        try:
            return [(str(r[0]),) for r in await conn.fetch("SELECT outcome FROM survey_decisions")]
        finally:
            await conn.close()
    return sqlite3.connect(store["path"]).execute("SELECT outcome FROM survey_decisions").fetchall()


async def test_sigkill_before_and_after_the_survey_loses_nothing_and_sends_once(
    tmp_path: Path, on_backend: OnBackend
) -> None:
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    db = tmp_path / "gw.db"
    cfg = on_backend(base_config(db, receiver.url))
    cfg["server"]["port"] = port
    cfg["timers"] = {"max_sleep": 0.2}
    cfg["surveys"] = {"delay": "1s"}
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/v1/channels/api/messages",
                headers={"Authorization": f"Bearer {CHANNEL}"},
                json={"external_id": "m-1", "text": "My login fails", "from": {"id": "cust-9"}},
            ) as resp:
                assert resp.status in (200, 201, 202), await resp.text()
                conv_id = (await resp.json())["conversation_id"]
            async with http.post(f"{base}/v1/conversations/{conv_id}/resolve", headers=auth) as r:
                assert r.status == 200
        daemon.kill()  # before the survey is due
        assert survey_bodies(receiver) == []

        await daemon.start()
        [question] = await wait_for(lambda: survey_bodies(receiver), timeout=15)
        assert question["conversation_id"] == conv_id
        # Right after it went out, once recorded as sent: a kill before that record is the
        # outbox's at-least-once redelivery of the same message, not a second question.
        async with aiohttp.ClientSession() as http:
            client = Client(base, http)
            await wait_for(lambda: client.message_with_status(conv_id, question["id"], "sent"))
        daemon.kill()

        await daemon.start()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/v1/surveys", headers=auth) as resp,
        ):
            items = (await resp.json())["items"]
        assert [(s["conversation_id"], s["kind"]) for s in items] == [(conv_id, "csat")]
        await asyncio.sleep(0.6)  # several turns of the timer loop (max_sleep 0.2 s)
        assert len(survey_bodies(receiver)) == 1
        decisions = await outcomes(cfg)
        assert decisions == [("sent",)]
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
        await receiver.stop()


async def test_two_firings_at_once_decide_once(
    gateway_factory: Any,
    tmp_path: Path,
    receiver: Receiver,
    on_backend: OnBackend,
) -> None:
    clock = Clock()
    cfg = on_backend(base_config(tmp_path / "db.sqlite", receiver.url))
    cfg["surveys"] = {"delay": "1h"}
    gw, client = await gateway_factory(cfg, clock=clock)
    status, body = await client.inbound("m-1", "Where is my refund?")
    assert status in (200, 201, 202), body
    await resolve(client, body["conversation_id"])
    clock.advance(7200)
    assert gw.surveys is not None
    now = clock()
    await asyncio.gather(gw.surveys.fire(now), gw.surveys.fire(now), gw.deadlines.run_once())
    assert len(await surveys(client)) == 1
    await wait_for(lambda: survey_bodies(receiver))
    await asyncio.sleep(0.2)
    assert len(survey_bodies(receiver)) == 1


async def test_two_instances_on_postgresql_ask_once(
    gateway_factory: Any, tmp_path: Path, receiver: Receiver, pg_dsn: str
) -> None:
    """Two gateways on one PostgreSQL: the resolution made on one falls due on both, both
    fire at the same instant, the customer gets one question, and both list it."""
    clock = Clock()
    cfg = base_config(tmp_path / "unused.sqlite", receiver.url)
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    cfg["surveys"] = {"delay": "1h"}
    gw_a, a = await gateway_factory(cfg, clock=clock)
    gw_b, b = await gateway_factory(cfg, clock=clock)
    status, body = await a.inbound("m-1", "Where is my refund?")
    assert status in (200, 201, 202), body
    await resolve(b, body["conversation_id"])
    clock.advance(7200)
    assert gw_a.surveys is not None and gw_b.surveys is not None
    now = clock()
    await asyncio.gather(
        gw_a.surveys.fire(now),
        gw_b.surveys.fire(now),
        gw_a.deadlines.run_once(),
        gw_b.deadlines.run_once(),
    )
    listed = [await surveys(client) for client in (a, b)]
    assert [[s["conversation_id"] for s in items] for items in listed] == [
        [body["conversation_id"]]
    ] * 2
    await wait_for(lambda: survey_bodies(receiver))
    await asyncio.sleep(0.2)
    assert len(survey_bodies(receiver)) == 1
    assert await decided(gw_b, body["conversation_id"]) == ["sent"]
