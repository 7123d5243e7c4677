"""SLA attainment and business-hours durations in the KPI rollups, at the store, on each
backend: the SLA clocks (the real planner on a routing config) record breaches, the fold
decides each target once, and the timed facts carry business seconds of the queue's
calendar. Numbers worked out by hand in the comments."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from connectors.base import Identity, InboundMessage
from gateway.kpis.figures import StatsQuery, calendar_seconds, report
from gateway.kpis.hooks import worktime
from gateway.store import SqliteStore
from gateway.store.base import Classification, IngestRequest, OutboundRequest
from gateway.store.postgres import PostgresStore
from gateway.time.sla import sla_planner
from router import RoutingConfig
from tests.pg import PgServer
from tests.store.test_contract import BACKENDS, BackendFactory

KpiStore = SqliteStore | PostgresStore
WEEK = 7 * 86400.0
UTC = ZoneInfo("UTC")

ROUTING = RoutingConfig.model_validate(
    {
        "queues": [{"name": "general", "hours": "office"}],
        "default": {"queue": "general"},
        "hours": {
            "office": {
                "timezone": "UTC",
                "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            }
        },
        "sla": {
            "policies": [
                {
                    "name": "standard",
                    "first_response": "1h",
                    "next_response": "30m",
                    "resolution": "8h",
                }
            ]
        },
    }
)
PLANNER = sla_planner(ROUTING)
WORKTIME = worktime(ROUTING)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")
    return BACKENDS[request.param]


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


class Script:
    def __init__(self, store: KpiStore) -> None:
        self.store = store
        self.n = 0

    async def inbound(self, who: str, when: str) -> str:
        self.n += 1
        msg = InboundMessage(external_id=f"m{self.n}", sender=Identity("email", who), text="hi")
        classify = lambda attrs: Classification("general", 1, {}, [], None, [])  # noqa: E731
        out = await self.store.ingest(
            IngestRequest("mail", "email", msg, classify, utc(when), WEEK)
        )
        assert out.conversation is not None
        return out.conversation.id

    async def reply(self, cid: str, when: str) -> None:
        await self.store.add_outbound(OutboundRequest(cid, "hello", "agent", "alice", utc(when)))


async def fold(store: KpiStore, sla: bool = True) -> int:
    total = 0
    while (n := (await store.stats_fold(3, WORKTIME, sla))[0]) > 0:
        total += n
    return total


async def figures(store: KpiStore, day: str, group_by: str | None = None) -> dict[str, Any]:
    start = utc(f"{day}T00:00:00")
    q = StatsQuery(start, start + 86400, group_by, UTC, start + 86400)
    return report(q, *await store.stats_read(q))


async def test_sla_targets_are_decided_once_and_business_hours_count_open_time(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    await store.sync_agents([("alice", "online", {"default": 5})])
    s = Script(store)
    # Office hours Mon-Fri 09:00-18:00 UTC; first response 1h, next response 30m,
    # resolution 8h, all business time.
    # A: writes Friday 17:50, answered Monday 09:10 (business 10 + 10 min = 1200 s; due
    # Monday 09:50: met); writes 09:20, answered 09:40 (met); resolved 10:00 (business
    # 600 + 3600 = 4200 s; the resolution clock paused while A was the one to write: met).
    a = await s.inbound("a@x.org", "2026-03-06T17:50:00")
    await store.assign(a, "alice", None, "admin", utc("2026-03-06T17:51:00"))
    await s.reply(a, "2026-03-09T09:10:00")
    await s.inbound("a@x.org", "2026-03-09T09:20:00")
    await s.reply(a, "2026-03-09T09:40:00")
    await store.resolve(a, "alice", None, utc("2026-03-09T10:00:00"))
    # B: writes Monday 10:00, answered 11:30: first response breached (due 11:00).
    b = await s.inbound("b@x.org", "2026-03-09T10:00:00")
    await s.reply(b, "2026-03-09T11:30:00")
    # C: writes Monday 12:00, unanswered at 14:00: breached at 13:00; its resolution
    # (due Tuesday 11:00) still runs: not counted.
    await s.inbound("c@x.org", "2026-03-09T12:00:00")

    # The SLA clocks have read nothing yet: the fold stops before the first conversation.
    await fold(store)
    assert (await figures(store, "2026-03-06"))["totals"]["conversations"] == 0
    await store.sla_fire(utc("2026-03-09T14:00:00"), PLANNER)
    assert await fold(store) > 0
    await store.sla_fire(utc("2026-03-09T14:00:00"), PLANNER)  # nothing new: nothing twice
    await fold(store)

    tot = (await figures(store, "2026-03-09"))["totals"]
    sla = tot["sla"]
    # First response: A met; B, C breached. Next response: A met. Resolution: A met.
    assert sla["first_response"] == {"met": 1, "breached": 2, "attainment": 0.3333}
    assert sla["next_response"] == {"met": 1, "breached": 0, "attainment": 1.0}
    assert sla["resolution"] == {"met": 1, "breached": 0, "attainment": 1.0}
    assert (sla["met"], sla["breached"], sla["breaches"], sla["attainment"]) == (3, 2, 2, 0.6)
    # Calendar first responses: A Fri 17:50 -> Mon 09:10 = 63h20m = 228000 s, B 5400 s;
    # in business seconds A 1200, B 5400.
    fr = tot["first_response"]
    assert (fr["count"], fr["median"], fr["p90"]) == (2, 116700.0, 228000.0)
    assert fr["business"] == {"count": 2, "median": 3300.0, "p90": 5400.0, "mean": 3300.0}
    assert tot["next_response"]["business"]["median"] == 1200.0
    # Resolution A: Fri 17:50 -> Mon 10:00 = 64h10m = 231000 s; 4200 s of business time.
    assert tot["resolution"]["median"] == 231000.0
    assert tot["resolution"]["business"]["median"] == 4200.0
    # The Friday: no decision, no sample (A's first response counts when it was made).
    friday = (await figures(store, "2026-03-06"))["totals"]
    assert friday["sla"]["attainment"] is None and friday["first_response"]["count"] == 0
    # By queue: all of it is general's.
    by_queue = await figures(store, "2026-03-09", "queue")
    [general] = by_queue["groups"]
    assert general["key"] == "general" and general["sla"]["attainment"] == 0.6
    await store.close()


async def test_without_sla_clocks_nothing_is_decided(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    s = Script(store)
    cid = await s.inbound("a@x.org", "2026-03-09T10:00:00")
    await s.reply(cid, "2026-03-09T10:05:00")
    assert await fold(store, sla=False) > 0
    sla = (await figures(store, "2026-03-09"))["totals"]["sla"]
    assert (sla["met"], sla["breached"], sla["attainment"]) == (0, 0, None)
    await store.close()


async def run_sql(store: KpiStore, place: Path, *statements: str) -> None:
    """Statements on the store's database from outside (as an operator would)."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(place / "store.db") as db:
            for sql in statements:
                db.execute(sql)
        return
    conn = await asyncpg.connect(PgServer.running().schema_dsn(place))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def test_whole_days_from_histograms_agree_with_every_sample(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    await store.sync_agents([("alice", "online", {"default": 5})])
    s = Script(store)
    # Three days of conversations, answered after 7 s to 5 h, some resolved.
    for i in range(40):
        opened = utc("2026-03-09T06:00:00") + i * 5400.0
        cid = await s.inbound(f"c{i}@x.org", datetime.fromtimestamp(opened, UTC).isoformat()[:19])
        if i % 3:
            await store.assign(cid, "alice", None, "admin", opened + 5)
        waited = 7.0 + (i * 7919 % 18000)
        await s.reply(cid, datetime.fromtimestamp(opened + waited, UTC).isoformat()[:19])
        if i % 2:
            await store.resolve(cid, "alice", None, opened + waited + 60 * i)
    await store.sla_fire(utc("2026-03-13T00:00:00"), PLANNER)
    await fold(store)
    parts = ("count", "median", "p90", "mean")

    async def both(by: str | None, start: float, end: float) -> list[dict[str, Any]]:
        out = []
        for duration in (None, calendar_seconds):  # with a duration: every sample
            q = StatsQuery(start, end, by, UTC, end)
            body = report(q, *await store.stats_read(q, duration))
            rows = [body["totals"], *(body["groups"] or [])]
            out.append(
                [
                    {n: {p: g[n][p] for p in parts} for n in ("first_response", "resolution")}
                    | {"handling": g["handling"], "awaiting": g["awaiting_agent"]}
                    for g in rows
                ]
            )
        return out

    # From noon to noon: the whole days 10th and 11th from the daily histograms, the rest
    # read; from the 1st to the 20th: the whole week of Monday the 9th from the weekly ones,
    # the days around it from the daily ones.
    for start, end in (
        (utc("2026-03-09T12:00:00"), utc("2026-03-12T12:00:00")),
        (utc("2026-03-01T00:00:00"), utc("2026-03-20T06:00:00")),
    ):
        for by in (None, "agent", "queue"):
            from_histograms, from_samples = await both(by, start, end)
            assert from_histograms == from_samples
            assert from_histograms[0]["first_response"]["count"] > 20
    start, end = utc("2026-03-09T12:00:00"), utc("2026-03-12T12:00:00")

    # After migration 16 the histograms are filled once from the facts folded before it.
    q = StatsQuery(start, end, "agent", UTC, end)
    before = report(q, *await store.stats_read(q))
    await run_sql(
        store,
        tmp_path,
        "DELETE FROM kpi_hist",
        "DELETE FROM kv WHERE namespace = 'stats' AND key = 'hist'",
    )
    await fold(store)
    after = report(q, *await store.stats_read(q))
    assert after["totals"] == before["totals"] and after["groups"] == before["groups"]
    await store.close()
