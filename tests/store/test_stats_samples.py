"""The packed samples (`kpi_samples`, gateway/kpis/samples.py) behind `/v1/stats` by agent,
day and hour, on each backend: the answer equals the one from every raw sample (exact, to
the last bit), with the period's ragged ends, when the fold appended to the same rows over
many small passes, and when a store folded before the samples existed fills them from its
facts (the backfill). And the counts by agent (`kpi_agent_days`): the facts counted."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from connectors.base import Identity, InboundMessage
from gateway.kpis.figures import COUNTED, Group, Key, StatsQuery, Summary
from gateway.store import SqliteStore
from gateway.store.base import Classification, IngestRequest, OutboundRequest
from gateway.store.migrations import MIGRATIONS
from gateway.store.postgres import PostgresStore
from gateway.store.postgres.migrations import MIGRATIONS as PG_MIGRATIONS
from tests.store.test_contract import BACKENDS, BackendFactory

KpiStore = SqliteStore | PostgresStore
WEEK = 7 * 86400.0
BERLIN = ZoneInfo("Europe/Berlin")
FIGURES = ("first_response", "next_response", "resolution", "handling", "awaiting")


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
    return BACKENDS[request.param]


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


def classify(attrs: object) -> Classification:
    return Classification("general", 1, {}, [], None, [])


async def month(store: KpiStore) -> None:
    """36 conversations every 100 minutes from Monday 06:00 UTC (2.5 days, across local
    midnights), answered by alice or bob after a few minutes, some with a second customer
    message and its answer, two thirds resolved."""
    start = utc("2026-03-02T06:00:00")
    for i in range(36):
        opened = start + i * 6000
        who = Identity("email", f"c{i}@x.org")
        agent = ("alice", "bob")[i % 2]
        msg = InboundMessage(external_id=f"c{i}-1", sender=who, text="hi")
        out = await store.ingest(IngestRequest("mail", "email", msg, classify, opened, WEEK))
        assert out.conversation is not None
        cid = out.conversation.id
        await store.assign(cid, agent, None, "admin", opened + 30 + i)
        replied = opened + 120 + 37 * i
        await store.add_outbound(OutboundRequest(cid, "hello", "agent", agent, replied))
        last = replied
        if i % 3 == 0:
            again = InboundMessage(external_id=f"c{i}-2", sender=who, text="and?")
            await store.ingest(IngestRequest("mail", "email", again, classify, last + 400, WEEK))
            last += 400 + 11 * i
            await store.add_outbound(OutboundRequest(cid, "so", "agent", agent, last))
        if i % 3 != 2:
            await store.resolve(cid, "admin", None, last + 900 + 13 * i)


async def fold_all(store: KpiStore) -> None:
    # Small passes: the fold appends to the same rows again and again. Business seconds as
    # a gateway without `routing.hours` computes them.
    while (await store.stats_fold(5, lambda queue, a, b: b - a))[0] > 0:
        pass


async def forget_samples(store: KpiStore) -> None:
    """As if the facts had been folded before the samples existed (before migration 22/12)."""
    if isinstance(store, SqliteStore):

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM kpi_samples")
            conn.execute("DELETE FROM kv WHERE namespace = 'stats' AND key = 'samples'")

        await store._tx(op)
    else:

        async def pg_op(conn: Any) -> None:
            await conn.execute("DELETE FROM kpi_samples")
            await conn.execute("DELETE FROM kv WHERE namespace = 'stats' AND key = 'samples'")

        await store._tx(pg_op)


def timed(answer: tuple[Group, dict[Key, Group] | None]) -> dict[Key, dict[str, Any]]:
    totals, groups = answer
    out = {"(totals)": dict(totals.timed)}
    for key, g in (groups or {}).items():
        if g.timed:
            out[key] = dict(g.timed)
    return out


QUERIES = [
    # Ragged at both ends (not on a slot, a day or an hour), and whole local days.
    (utc("2026-03-02T07:41:00"), utc("2026-03-04T16:50:00")),
    (
        datetime(2026, 3, 2, tzinfo=BERLIN).timestamp(),
        datetime(2026, 3, 5, tzinfo=BERLIN).timestamp(),
    ),
]


@pytest.mark.parametrize("group_by", ["agent", "day", "hour"])
async def test_packed_samples_answer_exactly_as_the_raw_samples(
    backend: BackendFactory, tmp_path: Path, group_by: str
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    try:
        await store.sync_agents(
            [("alice", "online", {"default": 50}), ("bob", "online", {"default": 50})]
        )
        await month(store)
        await fold_all(store)
        for start, end in QUERIES:
            for tz in (BERLIN, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")):  # +05:30 too
                q = StatsQuery(start, end, group_by, tz, end + 60)
                fast = await store.stats_read(q)
                raw = await store.stats_read(q, lambda a, b: b - a)  # every fact's sample
                expected = timed(raw)
                got = timed(fast)
                assert expected["(totals)"]["first_response"].count >= 35  # the data is there
                for key, figures in expected.items():
                    for name in FIGURES:
                        assert got[key].get(name) == figures.get(name), (tz, key, name)
                assert {k for k, f in got.items() if any(n in f for n in FIGURES)} == set(expected)
                # Without `routing.hours` the business seconds are the calendar ones.
                for key, figures in got.items():
                    for name in ("first_response", "next_response", "resolution"):
                        assert figures.get(f"{name}_business") == figures.get(name), (key, name)
        if group_by == "agent":
            keys = set(timed(fast)) - {"(totals)"}
            assert keys == {"alice", "bob"}
    finally:
        await store.close()


async def test_a_store_folded_before_the_samples_existed_fills_them_from_its_facts(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    try:
        await store.sync_agents(
            [("alice", "online", {"default": 50}), ("bob", "online", {"default": 50})]
        )
        await month(store)
        await fold_all(store)
        start, end = QUERIES[1]
        answers = {}
        for group_by in ("agent", "day", "hour"):
            q = StatsQuery(start, end, group_by, BERLIN, end + 60)
            answers[group_by] = timed(await store.stats_read(q))
        await forget_samples(store)
        q = StatsQuery(start, end, "agent", BERLIN, end + 60)
        # The whole UTC days' samples are gone (only the ragged end's are read from facts).
        assert timed(await store.stats_read(q))["(totals)"]["first_response"].count < 36
        assert (await store.stats_fold(5))[0] == 0  # nothing new: the backfill alone
        for group_by in ("agent", "day", "hour"):
            q = StatsQuery(start, end, group_by, BERLIN, end + 60)
            assert timed(await store.stats_read(q)) == answers[group_by], group_by
        await fold_all(store)  # a second fold does not count them again
        q = StatsQuery(start, end, "day", BERLIN, end + 60)
        assert timed(await store.stats_read(q)) == answers["day"]
    finally:
        await store.close()


@pytest.mark.parametrize("group_by", ["agent", "hour"])
async def test_business_seconds_other_than_the_calendar_ones_are_their_own_figures(
    backend: BackendFactory, tmp_path: Path, group_by: str
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    try:
        await store.sync_agents(
            [("alice", "online", {"default": 50}), ("bob", "online", {"default": 50})]
        )
        await month(store)
        # A stand-in calendar open half the time: every business sample is half the calendar
        # one (halving a float is exact, so are the median, p90 and mean of the halves).
        while (await store.stats_fold(5, lambda queue, a, b: (b - a) / 2))[0] > 0:
            pass
        start, end = QUERIES[0]
        got = timed(await store.stats_read(StatsQuery(start, end, group_by, BERLIN, end)))
        assert len(got) > 2
        for key, figures in got.items():
            for name in ("first_response", "next_response", "resolution"):
                calendar, business = figures.get(name), figures.get(f"{name}_business")
                assert calendar is not None or business is None, (key, name)
                if calendar is not None:
                    assert business == Summary(
                        calendar.count, calendar.median / 2, calendar.p90 / 2, calendar.mean / 2
                    ), (key, name)
    finally:
        await store.close()


async def run_sql(store: KpiStore, sql: str) -> list[tuple[Any, ...]]:
    """One statement on the store's database, its rows."""
    if isinstance(store, SqliteStore):

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sql).fetchall()]

        rows: list[tuple[Any, ...]] = await store._tx(op)
        return rows

    async def pg_op(conn: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await conn.fetch(sql)]

    pg_rows: list[tuple[Any, ...]] = await store._tx(pg_op)
    return pg_rows


def backfill_sql(migrations: list[tuple[int, str]], version: int) -> str:
    """The statement of migration `version` that counts the facts folded before it."""
    script = dict(migrations)[version]
    (statement,) = [s for s in script.split(";\n") if "INSERT INTO kpi_agent_days" in s]
    return statement


async def test_counts_by_agent_are_the_facts_counted_per_agent(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    try:
        await store.sync_agents(
            [("alice", "online", {"default": 50}), ("bob", "online", {"default": 50})]
        )
        await month(store)
        await fold_all(store)
        facts = await run_sql(store, "SELECT kind, at, agent FROM kpi_facts")

        def expected(start: float, end: float) -> dict[Key, dict[str, int]]:
            out: dict[Key, dict[str, int]] = {}
            for kind, at, agent in facts:
                if kind in COUNTED and start <= at < end:
                    counts = out.setdefault(agent or None, {})
                    counts[kind] = counts.get(kind, 0) + 1
            return out

        async def answered(start: float, end: float) -> dict[Key, dict[str, int]]:
            _, groups = await store.stats_read(StatsQuery(start, end, "agent", BERLIN, end))
            assert groups is not None
            return {k: g.counts for k, g in groups.items() if g.counts}

        for start, end in [*QUERIES, (utc("2026-03-02T00:00:00"), utc("2026-03-05T00:00:00"))]:
            want = expected(start, end)
            assert want[None]["created"] > 10 and want["alice"]["out"] > 10  # all three there
            assert await answered(start, end) == want
        # The migration's count of the facts folded before it gives the same rollup.
        migrations = MIGRATIONS if isinstance(store, SqliteStore) else PG_MIGRATIONS
        version = 22 if isinstance(store, SqliteStore) else 12
        before = sorted(await run_sql(store, "SELECT day, kind, agent, n FROM kpi_agent_days"))
        await run_sql(store, "DELETE FROM kpi_agent_days")
        await run_sql(store, backfill_sql(migrations, version))
        after = sorted(await run_sql(store, "SELECT day, kind, agent, n FROM kpi_agent_days"))
        assert after == before and len(before) > 20
    finally:
        await store.close()


async def test_the_stats_cpu_work_runs_off_the_event_loop(
    backend: BackendFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fold's rules, a read's unpacking and sorting of samples and the backfill's
    packing of every fact run in a worker thread (SQLite: the store's own; PostgreSQL:
    `asyncio.to_thread`), never on the event loop: a large period's `/v1/stats` does not
    hold up the messages, sockets and timers of the instance meanwhile."""
    from gateway.store.postgres import stats as pg_stats
    from gateway.store.sqlite import stats as sqlite_stats
    from gateway.store.sqlite import stats_samples

    loop_thread = threading.get_ident()
    seen: dict[str, set[int]] = {}

    def spy(label: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            seen.setdefault(label, set()).add(threading.get_ident())
            return real(*args)

        return call

    monkeypatch.setattr(
        sqlite_stats, "sample_accumulate", spy("fold", sqlite_stats.sample_accumulate)
    )
    monkeypatch.setattr(stats_samples, "unpack", spy("read", stats_samples.unpack))
    for module in (stats_samples, pg_stats):
        monkeypatch.setattr(module, "sample_accumulate", spy("backfill", module.sample_accumulate))
    store = cast(KpiStore, backend(tmp_path))
    await store.open()
    try:
        await store.sync_agents(
            [("alice", "online", {"default": 50}), ("bob", "online", {"default": 50})]
        )
        await month(store)
        worktime = spy("worktime", lambda queue, a, b: b - a)
        while (await store.stats_fold(50, worktime))[0] > 0:
            pass
        start, end = QUERIES[0]
        q = StatsQuery(start, end, "agent", BERLIN, end)
        by_samples = timed(await store.stats_read(q))
        sorted_here = timed(await store.stats_read(q, spy("duration", lambda a, b: b - a)))
        assert by_samples["alice"]["first_response"] == sorted_here["alice"]["first_response"]
        await forget_samples(store)
        await store.stats_fold(50, worktime)  # fills the samples again: the backfill
        assert timed(await store.stats_read(q)) == by_samples
    finally:
        await store.close()
    assert set(seen) == {"fold", "worktime", "read", "duration", "backfill"}
    assert all(loop_thread not in threads for threads in seen.values()), seen
