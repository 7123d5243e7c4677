"""`switchboard migrate` carries the SLA clocks and the notices along: after the move the
timer goes on where SQLite stopped, and nothing that fired on SQLite fires again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from gateway.store import SqliteStore
from gateway.store.postgres import PostgresStore
from gateway.store.timekeeping import TimeStore
from tests.store.test_time_store import T0, H, planner, waiting

ROOT = Path(__file__).resolve().parents[2]


async def migrate(args: list[str]) -> int:
    """`switchboard migrate` as a user runs it (a process of its own)."""
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert "sla: 1 rows" in run.stderr and "notices: 1 rows" in run.stderr, run.stderr
    return run.returncode


async def test_the_sla_clocks_and_notices_move_with_the_installation(
    tmp_path: Path, pg_dsn: str
) -> None:
    plan = planner(tmp_path)
    sqlite = SqliteStore(tmp_path / "switchboard.db")
    await sqlite.open()
    try:
        cid = await waiting(sqlite, "m1", "dana@example.com", T0)
        await sqlite.sla_fire(T0 + 1, plan)
        [warning] = await sqlite.sla_fire(T0 + H - 600, plan)  # fired on SQLite
        assert warning.type == "sla.warning"
        assert await sqlite.notice_once(cid, "wait", T0 + 300)
        before = await sqlite.sla_of([cid])
        [seat] = await sqlite.waiting_page_sla(
            (await sqlite.routing_state()).waiting_groups[0], None, 5
        )
    finally:
        await sqlite.close()

    args = ["migrate", "--from", f"sqlite:{tmp_path / 'switchboard.db'}", "--to", pg_dsn]
    assert await migrate(args) == 0
    pg = PostgresStore(pg_dsn)
    await pg.open()
    try:
        assert isinstance(pg, TimeStore)
        assert await pg.sla_of([cid]) == before
        assert await pg.noticed([cid], "wait") == {cid}
        assert not await pg.notice_once(cid, "wait", T0 + 400)  # sent once, on SQLite
        group = (await pg.routing_state()).waiting_groups[0]
        assert [(w.id, w.sla_due) for w in await pg.waiting_page_sla(group, None, 5)] == [
            (seat.id, seat.sla_due)
        ]
        # The timer sleeps until the breach: the log was read on SQLite already.
        assert await pg.sla_next_due(T0 + H - 500) == T0 + H
        fired = await pg.sla_fire(T0 + H, plan)
        assert [(e.type, e.data["target"]) for e in fired] == [("sla.breached", "first_response")]
    finally:
        await pg.close()
    assert await migrate(args) == 0  # a second run changes nothing it already moved
    pg = PostgresStore(pg_dsn)
    await pg.open()
    try:
        assert await pg.sla_fire(T0 + H + 1, plan) == []
        fired_marks = (await pg.sla_of([cid]))[cid]["fired"]["first_response"]
        assert fired_marks["breached"] == T0 + H
    finally:
        await pg.close()
