"""Business hours and SLA timers through the real `switchboard run` process, its wall clock
moved by libfaketime (Debian `faketime`, installed by scripts/test): out of hours over the
night the clocks go forward, a SIGKILL, and a restart after both the opening and the SLA
due time passed while it was down — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faketime import faketime_env, write_clock
from tests.gateway.conftest import ADMIN, CHANNEL, base_config, config_text, wait_for
from tests.gateway.test_e2e_daemon import Daemon, free_port
from tests.pg import PgServer


def set_clock(path: Path, utc: str) -> None:
    """Freeze the daemon's wall clock at `utc` (read on every call: FAKETIME_NO_CACHE)."""
    write_clock(path, utc)


async def events(http: aiohttp.ClientSession, base: str, want: set[str]) -> list[dict[str, Any]]:
    """The event log from the start over SSE, until every type in `want` was seen."""
    out: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with http.get(f"{base}/v1/events?since=0", headers=headers) as r:
        buf = b""
        while not want <= {e["type"] for e in out}:
            buf += await asyncio.wait_for(r.content.readany(), 10)
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        out.append(json.loads(line[6:]))
    return out


@pytest.fixture(params=["sqlite", "postgres"])
async def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The daemon's `store:`: a SQLite file, or a database of its own on the session's
    private PostgreSQL (tests/pg.py), which libfaketime does not reach."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "gw.db")}
    server: PgServer = request.getfixturevalue("pg_server")  # the session's, started once
    return {"backend": "postgres", "dsn": await server.new_database()}


async def test_closed_over_the_dst_weekend_then_kill_and_restart_past_due(
    tmp_path: Path, store_section: dict[str, Any]
) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "gw.db")
    cfg["store"] = store_section
    cfg["server"]["port"] = port
    cfg["routing"]["hours"] = {
        "office": {
            "timezone": "Europe/Berlin",
            "weekly": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        }
    }
    cfg["routing"]["default_hours"] = "office"
    cfg["routing"]["sla"] = {
        "warning": "10m",
        "policies": [{"name": "standard", "first_response": "1h", "resolution": "8h"}],
    }
    cfg["timers"] = {"max_sleep": 0.2}
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    clock = tmp_path / "faketime"
    env = {
        **faketime_env(clock),
        "TZ": "UTC",
    }
    daemon = Daemon(config, port, tmp_path / "daemon.log", env=env)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    # Friday 27 March 2026, 19:30 in Berlin (CET): closed until Monday 08:00, which is CEST.
    set_clock(clock, "2026-03-27 18:30:00")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/v1/channels/api/messages",
                headers={"Authorization": f"Bearer {CHANNEL}"},
                json={"external_id": "e1", "text": "hello?", "from": {"id": "cust-1"}},
            ) as r:
                assert r.status == 202
                conv_id = (await r.json())["conversation_id"]

            async def conversation() -> dict[str, Any]:
                async with http.get(f"{base}/v1/conversations/{conv_id}", headers=auth) as r:
                    return dict(await r.json())

            async def with_sla() -> dict[str, Any] | None:
                conv = await conversation()
                return conv if conv["sla"] else None

            conv = await wait_for(with_sla, timeout=10)
            bot = [m["text"] for m in conv["messages"] if m["sender"]["type"] == "bot"]
            assert bot == [
                "Thank you for your message. We are closed right now and back on Monday at "
                "08:00; we will answer you then."
            ]
            assert conv["assignee"] is None
            # One business hour after Monday 08:00 CEST (06:00 UTC): the DST switch counted.
            assert conv["sla"]["first_response"]["due_at"] == "2026-03-30T07:00:00Z"

        daemon.kill()  # SIGKILL: no timers to lose, they are rows in the store
        # While it is down: the queue opens (06:00 UTC) and the first response falls due.
        set_clock(clock, "2026-03-30 07:30:00")
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            seen = await events(http, base, {"sla.breached", "conversation.assigned"})
            async with http.get(f"{base}/v1/conversations/{conv_id}", headers=auth) as r:
                conv = await r.json()
            assert conv["assignee"] in ("alice", "bob")
            assert conv["sla"]["first_response"]["breached_at"] == "2026-03-30T07:30:00Z"
            await asyncio.sleep(1.0)  # several timer rounds (max_sleep 0.2 s) later ...
            seen = await events(http, base, {"sla.breached"})
            assert [e["data"]["target"] for e in seen if e["type"] == "sla.breached"] == [
                "first_response"
            ]  # ... it fired once
        assert daemon.terminate() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
