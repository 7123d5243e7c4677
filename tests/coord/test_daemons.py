"""Two real `switchboard run` processes on one PostgreSQL and one Redis (issue 11)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.coord.test_fanout import Visitor, cluster_config
from tests.gateway.conftest import ADMIN, CHANNEL, agent_token, config_text, wait_for
from tests.gateway.test_e2e_daemon import Daemon, free_port


@pytest.mark.timeout(180)
async def test_two_daemons_wake_each_other_and_a_reply_on_a_reaches_a_chat_on_b(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    daemons: list[Daemon] = []
    bases: list[str] = []
    for name in ("a", "b"):
        port = free_port()
        cfg = cluster_config(tmp_path, pg_dsn, redis_url)
        cfg["server"]["port"] = port
        cfg["outbox"]["max_attempts"] = None
        config = tmp_path / f"{name}.yaml"
        config.write_text(config_text(cfg))
        daemon = Daemon(config, port, tmp_path / f"{name}.log")
        daemons.append(daemon)
        bases.append(f"http://127.0.0.1:{port}")
    for daemon in daemons:
        await daemon.start()
    a, b = bases
    admin = {"Authorization": f"Bearer {ADMIN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{b}/readyz") as r:
                assert (await r.json())["coordination"] == "ok"
            # Events committed on A are on B's stream within a second (B's own poll of the
            # log is every 2 s: only the wake-up from A is that quick, every time).
            ws = await http.ws_connect(f"{b}/v1/events", headers=admin)
            received: dict[str, float] = {}

            async def read() -> None:
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event["type"] == "message.received":
                        received[event["data"]["message"]["external_id"]] = time.monotonic()

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.3)
            sent_at: dict[str, float] = {}
            for n in range(5):
                ext = f"d-{n}"
                sent_at[ext] = time.monotonic()
                async with http.post(
                    f"{a}/v1/channels/api/messages",
                    headers={"Authorization": f"Bearer {CHANNEL}"},
                    json={"external_id": ext, "text": f"question {n}", "from": {"id": f"x{n}"}},
                ) as r:
                    assert r.status == 202
                await asyncio.sleep(0.4)
            await wait_for(lambda: set(received) >= set(sent_at), timeout=10)
            late = {ext: received[ext] - sent_at[ext] for ext in sent_at}
            assert all(delay < 1.0 for delay in late.values()), late
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await ws.close()

            # A visitor chatting on B; the agent answers through A's API.
            visitor = Visitor(b, http)
            await visitor.connect()
            await visitor.say("v1", "Is anyone there?")

            async def chat() -> dict[str, Any] | None:
                async with http.get(f"{a}/v1/conversations?channel=webchat", headers=admin) as r:
                    convs = (await r.json())["conversations"]
                return convs[0] if convs and convs[0]["assignee"] else None

            conv = await wait_for(chat, timeout=10)
            async with http.post(
                f"{a}/v1/conversations/{conv['id']}/messages",
                headers={"Authorization": f"Bearer {agent_token(conv['assignee'])}"},
                json={"text": "Yes, Alice here"},
            ) as r:
                assert r.status == 202
                reply = await r.json()
            await wait_for(lambda: "Yes, Alice here" in visitor.replies(), timeout=10)

            async def sent() -> bool:
                async with http.get(f"{a}/v1/conversations/{conv['id']}", headers=admin) as r:
                    msgs = (await r.json())["messages"]
                return any(m["id"] == reply["id"] and m["status"] == "sent" for m in msgs)

            await wait_for(sent, timeout=10)
            await visitor.close()
    finally:
        for daemon in daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.terminate()
