"""PostgreSQL stopped for 30 s under a `switchboard run` daemon while customers write.

What a user notices: providers get 503 with Retry-After meanwhile (and retry), a chat
visitor's message is refused with a clear error (the widget sends it again), `/readyz` is
false and says why, the log says so once per interval instead of once per request; after
the server is back everything flows again, every accepted message is stored once and
nothing is half-written (a conversation without its message, a message without its event).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.servers import OwnPg, half_written, log_lines, query, readyz, until
from tests.gateway.conftest import ADMIN, CHANNEL, base_config, config_text
from tests.gateway.test_e2e_daemon import Daemon, free_port

OUTAGE = 30.0
WEBCHAT_SECRET = "test-webchat-secret-0123456789"


class Provider:
    """A provider posting customer messages one after another, each retried until the
    gateway takes it (202), honouring Retry-After like Twilio or an integration would."""

    def __init__(self, http: aiohttp.ClientSession, base: str, name: str) -> None:
        self.http, self.base, self.name = http, base, name
        self.accepted: dict[str, str] = {}  # external id -> message id
        self.refusals: list[tuple[int, str | None, float]] = []  # status, Retry-After, when
        self.stopping = False

    async def run(self) -> None:
        i = 0
        while not self.stopping:
            ext = f"{self.name}-{i}"
            i += 1
            while True:
                try:
                    async with self.http.post(
                        f"{self.base}/v1/channels/api/messages",
                        headers={"Authorization": f"Bearer {CHANNEL}"},
                        json={
                            "external_id": ext,
                            "text": f"message {ext}",
                            "from": {"id": f"{self.name}-cust-{i % 7}"},
                        },
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as r:
                        if r.status == 202:
                            self.accepted[ext] = (await r.json())["message_id"]
                            break
                        body = await r.json()
                        assert r.status == 503, (r.status, body)
                        retry_after = r.headers.get("Retry-After")
                        self.refusals.append((r.status, retry_after, time.monotonic()))
                        await asyncio.sleep(float(retry_after or 1))
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(1)
            await asyncio.sleep(0.05)


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of type `kind` (echoes, status and availability frames skipped)."""
    while True:
        msg = await ws.receive(timeout=20)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        frame: dict[str, Any] = msg.json()
        if frame["type"] in (kind, "error"):
            return frame


@pytest.mark.timeout(180)
async def test_postgres_stopped_for_30_seconds(tmp_path: Path) -> None:
    pg = OwnPg()
    pg.start()
    port = free_port()
    cfg = base_config(tmp_path / "unused.db")
    cfg["store"] = {"backend": "postgres", "dsn": pg.dsn, "pool_size": 4}
    cfg["server"]["port"] = port
    cfg["channels"].append(
        {
            "name": "webchat",
            "type": "webchat",
            "secret": WEBCHAT_SECRET,
            "allowed_origins": [f"http://127.0.0.1:{port}"],
        }
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    log = tmp_path / "daemon.log"
    daemon = Daemon(config, port, log, start_timeout=90)
    base = f"http://127.0.0.1:{port}"
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            status, body = await readyz(http, base)
            assert status == 200 and body["store"] == "ok", body
            # A chat visitor already talking before the outage.
            ws = await http.ws_connect(f"{base}/webchat/webchat/ws", origin=base)
            await ws.send_json({"type": "hello", "token": None, "language": "en"})
            assert (await receive(ws, "welcome"))["type"] == "welcome"
            await ws.send_json({"type": "message", "client_id": "before", "text": "hello"})
            assert (await receive(ws, "ack"))["type"] == "ack"

            providers = [Provider(http, base, f"p{n}") for n in range(3)]
            tasks = [asyncio.create_task(p.run()) for p in providers]

            async def some_accepted() -> bool:
                return sum(len(p.accepted) for p in providers) >= 30

            await until(some_accepted, 30)

            # --- PostgreSQL stops ------------------------------------------------------
            pg.pause()
            down_at = time.monotonic()
            status, body = await readyz(http, base)
            assert status == 503 and body["ready"] is False and body["store"] == "down", body
            assert "store unreachable" in body["reason"], body
            await ws.send_json({"type": "message", "client_id": "during", "text": "anyone?"})
            refused = await receive(ws, "ack")
            assert (refused["type"], refused["code"], refused["client_id"]) == (
                "error",
                "unavailable",
                "during",
            ), refused
            assert "cannot store messages right now" in refused["message"]
            # The API itself answers 503 too, not a 500 with a traceback.
            async with http.get(
                f"{base}/v1/conversations", headers={"Authorization": f"Bearer {ADMIN}"}
            ) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "5", await r.text()
                assert (await r.json())["error"]["code"] == "unavailable"
            accepted_before = {k: v for p in providers for k, v in p.accepted.items()}
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
            accepted_during = {
                k: v for p in providers for k, v in p.accepted.items() if k not in accepted_before
            }

            # --- PostgreSQL is back ----------------------------------------------------
            pg.resume()
            up_at = time.monotonic()

            async def ready() -> bool:
                return (await readyz(http, base))[0] == 200

            await until(ready, 30)
            await ws.send_json({"type": "message", "client_id": "during", "text": "anyone?"})
            ack = await receive(ws, "ack")
            assert ack["type"] == "ack" and ack["duplicate"] is False, ack

            at_resume = [len(p.accepted) for p in providers]

            async def flowing() -> bool:
                return all(
                    len(p.accepted) >= n + 10 for p, n in zip(providers, at_resume, strict=True)
                )

            await until(flowing, 60)
            for p in providers:
                p.stopping = True
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            await ws.close()

        accepted = {k: v for p in providers for k, v in p.accepted.items()}
        refusals = [r for p in providers for r in p.refusals]
        # Refused meanwhile, with 503 and Retry-After; nothing refused outside the outage
        # (a few seconds of slack for the pool to notice the server is back).
        assert refusals, "no request was refused while PostgreSQL was down"
        assert {(s, ra) for s, ra, _ in refusals} == {(503, "5")}
        assert all(down_at - 1 <= at <= up_at + 10 for _, _, at in refusals)
        # Nothing was taken without the store (what looked accepted meanwhile was a
        # request already past its commit when the server stopped).
        assert len(accepted_during) <= 3, accepted_during

        # Every accepted message stored exactly once, under the id it was acknowledged with.
        rows = await query(
            pg.dsn, "SELECT external_id, id FROM messages WHERE channel='api' AND direction='in'"
        )
        stored: dict[str, list[str]] = {}
        for row in rows:
            stored.setdefault(row["external_id"], []).append(row["id"])
        assert {k: [v] for k, v in accepted.items()} == {
            k: v for k, v in stored.items() if k in accepted
        }
        # Anything else stored is a request the provider gave up on at the very end (none).
        assert set(stored) == set(accepted)
        chat = await query(pg.dsn, "SELECT external_id FROM messages WHERE channel='webchat'")
        assert sorted(r["external_id"].rsplit(":", 1)[1] for r in chat) == ["before", "during"]
        assert await half_written(pg.dsn) == dict.fromkeys(await half_written(pg.dsn), 0)

        # The log: one line when lost, one per 30 s while lost, one when back; no
        # traceback for each request or loop that met the outage.
        lines = log_lines(log)
        lost = [x for x in lines if x["msg"] == "store (PostgreSQL) unreachable"]
        still = [x for x in lines if x["msg"] == "store (PostgreSQL) still unreachable"]
        back = [x for x in lines if x["msg"] == "store (PostgreSQL) reachable again"]
        assert len(lost) == 1 and len(still) <= 2 and len(back) == 1, (lost, still, back)
        assert [x for x in lines if "exc" in x] == []
        assert len([x for x in lines if x.get("level") in ("error", "warning")]) < 20, [
            x["msg"] for x in lines if x.get("level") in ("error", "warning")
        ]
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
        pg.stop()
