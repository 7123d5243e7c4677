"""The KPI rollups at the store: folding the event log, local days and hours across
daylight saving time, a business-hours duration, and two folds racing; on each backend
(`BACKENDS` of the store contract suite: SQLite, and the session's private PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import pytest

from connectors.base import Identity, InboundMessage
from gateway.kpis.figures import StatsQuery, csv_text, report
from gateway.store import SqliteStore
from gateway.store.base import Classification, IngestRequest, OutboundRequest
from gateway.store.postgres import PostgresStore
from tests.store.test_contract import BACKENDS, BackendFactory

# A store that keeps the KPI rollups: either backend.
KpiStore = SqliteStore | PostgresStore


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
    return BACKENDS[request.param]


BERLIN = ZoneInfo("Europe/Berlin")
WEEK = 7 * 86400.0


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


async def converse(store: KpiStore, who: str, opened: float, replied: float) -> str:
    """A customer writes at `opened`; alice (assigned a minute later) replies at `replied`."""
    msg = InboundMessage(external_id=f"{who}-1", sender=Identity("email", who), text="hi")
    classify = lambda attrs: Classification("general", 1, {}, [], None, [])  # noqa: E731
    out = await store.ingest(IngestRequest("mail", "email", msg, classify, opened, WEEK))
    assert out.conversation is not None
    cid = out.conversation.id
    await store.assign(cid, "alice", None, "admin", opened + 60)
    await store.add_outbound(OutboundRequest(cid, "hello", "agent", "alice", replied))
    return cid


async def open_store(backend: BackendFactory, place: Path) -> KpiStore:
    store = cast(KpiStore, backend(place))
    await store.open()
    await store.sync_agents([("alice", "online", {"default": 5})])
    return store


async def fold_all(store: KpiStore) -> int:
    total = 0
    while (n := (await store.stats_fold(limit=3))[0]) > 0:  # small batches: cursor resumes
        total += n
    return total


async def test_local_hours_and_days_follow_daylight_saving_time(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = await open_store(backend, tmp_path)
    # 2026-10-25, Berlin: 03:00 CEST becomes 02:00 CET at 01:00 UTC; the local 02:00 hour
    # happens twice. A first response in each (00:10 and 01:10 UTC), and one on the day
    # after at 23:30 UTC (00:30 CET on the 26th).
    await converse(store, "a@x.org", utc("2026-10-25T00:00:00"), utc("2026-10-25T00:10:00"))
    await converse(store, "b@x.org", utc("2026-10-25T01:00:00"), utc("2026-10-25T01:30:00"))
    await converse(store, "c@x.org", utc("2026-10-25T23:00:00"), utc("2026-10-25T23:30:00"))
    assert await fold_all(store) > 0
    start = datetime(2026, 10, 25, tzinfo=BERLIN).timestamp()
    end = datetime(2026, 10, 27, tzinfo=BERLIN).timestamp()

    q = StatsQuery(start, end, "hour", BERLIN, end)
    body = report(q, *await store.stats_read(q))
    keys = [g["key"] for g in body["groups"]]
    assert len(keys) == 49  # 25 hours on the 25th, 24 on the 26th
    first = {g["key"]: g["first_response"]["count"] for g in body["groups"]}
    assert first["2026-10-25T02:00+02:00"] == 1  # 00:10 UTC: 600 s
    assert first["2026-10-25T02:00+01:00"] == 1  # 01:30 UTC: 1800 s
    assert first["2026-10-26T00:00+01:00"] == 1

    q = StatsQuery(start, end, "day", BERLIN, end)
    body = report(q, *await store.stats_read(q))
    days = {g["key"]: g["first_response"] for g in body["groups"]}
    # The 25th: [600, 1800]; the 26th: [1800].
    assert {k: days["2026-10-25"][k] for k in ("count", "median", "p90", "mean")} == {
        "count": 2,
        "median": 1200.0,
        "p90": 1800.0,
        "mean": 1200.0,
    }
    assert days["2026-10-26"]["count"] == 1
    assert body["totals"]["first_response"]["count"] == 3
    await store.close()


async def test_a_business_hours_duration_replaces_calendar_seconds(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = await open_store(backend, tmp_path)
    await converse(store, "a@x.org", utc("2026-03-02T08:00:00"), utc("2026-03-02T10:00:00"))
    await fold_all(store)
    q = StatsQuery(utc("2026-03-02T00:00:00"), utc("2026-03-03T00:00:00"), None, BERLIN, 0)

    def business(a: float, b: float) -> float:
        """Stand-in for business hours: only the time from 09:00 UTC counts."""
        return b - max(a, utc("2026-03-02T09:00:00"))

    calendar = report(q, *await store.stats_read(q))["totals"]["first_response"]
    working = report(q, *await store.stats_read(q, business))["totals"]["first_response"]
    assert calendar["median"] == 7200.0 and working["median"] == 3600.0
    await store.close()


async def test_two_folds_at_once_count_each_event_once(
    backend: BackendFactory, tmp_path: Path
) -> None:
    one = await open_store(backend, tmp_path)
    two = cast(KpiStore, backend(tmp_path))  # another process on the same database
    await two.open()
    for i in range(5):
        opened = utc("2026-03-02T08:00:00") + i * 600
        await converse(one, f"c{i}@x.org", opened, opened + 300)
    await asyncio.gather(fold_all(one), fold_all(two))
    q = StatsQuery(utc("2026-03-02T00:00:00"), utc("2026-03-03T00:00:00"), "agent", BERLIN, 0)
    body = report(q, *await one.stats_read(q))
    assert body["totals"]["conversations"] == 5
    assert body["totals"]["first_response"]["count"] == 5
    assert [g["key"] for g in body["groups"]] == ["alice", None]
    await one.close()
    await two.close()


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    q = StatsQuery(0, 86400, "channel", ZoneInfo("UTC"), 86400)
    from gateway.kpis.figures import Group

    body = report(q, Group(), {"=HYPERLINK(1)": Group(counts={"created": 2})})
    rows = list(csv.reader(io.StringIO(csv_text(body))))
    assert rows[1][0] == "'=HYPERLINK(1)" and rows[1][1] == "2"
    assert rows[-1][0] == "total"


async def test_a_visitor_who_leaves_unanswered_is_abandoned_once_and_an_answered_one_not(
    backend: BackendFactory, tmp_path: Path
) -> None:
    store = await open_store(backend, tmp_path)
    classify = lambda attrs: Classification("general", 1, {}, [], None, [])  # noqa: E731

    async def visit(visitor: str, at: float) -> str:
        msg = InboundMessage(
            external_id=f"{visitor}-1", sender=Identity("webchat", visitor), text="hi"
        )
        out = await store.ingest(IngestRequest("web", "webchat", msg, classify, at, WEEK))
        assert out.conversation is not None
        return out.conversation.id

    t0 = utc("2026-03-02T10:00:00")
    left = await visit("v-left", t0)
    answered = await visit("v-answered", t0)
    await store.add_outbound(OutboundRequest(answered, "hello", "agent", "alice", t0 + 60))
    # Left at +120 s: the first had no answer, the second had one at +60 s.
    first = await store.record_departure(Identity("webchat", "v-left"), t0 + 120, "web", t0 + 180)
    again = await store.record_departure(Identity("webchat", "v-left"), t0 + 300, "web", t0 + 360)
    other = await store.record_departure(
        Identity("webchat", "v-answered"), t0 + 120, "web", t0 + 180
    )
    assert [e.type for e in first] == ["conversation.abandoned"]
    assert first[0].data["conversation_id"] == left
    assert again == [] and other == []
    await fold_all(store)
    q = StatsQuery(utc("2026-03-02T00:00:00"), utc("2026-03-03T00:00:00"), None, BERLIN, 0)
    totals = report(q, *await store.stats_read(q))["totals"]
    assert totals["abandoned"] == {"count": 1, "rate": 0.5}
    await store.close()


async def test_two_instances_told_of_one_departure_record_one_abandonment(
    backend: BackendFactory, tmp_path: Path
) -> None:
    one = await open_store(backend, tmp_path)
    two = cast(KpiStore, backend(tmp_path))  # another instance on the same database
    await two.open()
    t0 = utc("2026-03-02T10:00:00")
    msg = InboundMessage(external_id="v-1", sender=Identity("webchat", "v-race"), text="hi")
    classify = lambda attrs: Classification("general", 1, {}, [], None, [])  # noqa: E731
    await one.ingest(IngestRequest("web", "webchat", msg, classify, t0, WEEK))
    # The visitor's socket closes on both (a reconnect, then the tab closed): both report it.
    visitor = Identity("webchat", "v-race")
    found = await asyncio.gather(
        *(s.record_departure(visitor, t0 + 60, "web", t0 + 61) for s in (one, two, one, two))
    )
    assert sorted(len(events) for events in found) == [0, 0, 0, 1]
    await fold_all(two)
    q = StatsQuery(utc("2026-03-02T00:00:00"), utc("2026-03-03T00:00:00"), None, BERLIN, 0)
    totals = report(q, *await one.stats_read(q))["totals"]
    assert totals["abandoned"] == {"count": 1, "rate": 1.0}
    await one.close()
    await two.close()


async def test_widget_suggestions_that_answered_count_as_self_service(
    backend: BackendFactory, tmp_path: Path
) -> None:
    """Issue 15: "did this answer your question?" under the widget's articles — yes twice on
    one web chat, no once — is the self-service rate's `suggestions`, in the totals, by
    channel and by day; a conversation's figures are untouched by it."""
    from gateway.store.kb import kb_store

    store = await open_store(backend, tmp_path)
    kb = kb_store(store)
    day = utc("2026-03-02T00:00:00")
    article = [{"slug": "refund", "language": "en"}]
    for n, (channel, helpful) in enumerate((("chat", True), ("chat", True), ("shop", False))):
        entry = {"channel": channel, "visitor": f"webchat:v{n}", "articles": article}
        await kb.kb_record("shown", entry, day + 3600 + n)
        await kb.kb_record("answered", {**entry, "helpful": helpful}, day + 3700 + n)
    await converse(store, "a@x.org", day + 7200, day + 7300)
    assert await fold_all(store) > 0

    def suggestions(figures: dict[str, object]) -> object:
        return figures["self_service"]["suggestions"]  # type: ignore[index]

    q = StatsQuery(day, day + 86400, None, ZoneInfo("UTC"), day + 86400)
    body = report(q, *await store.stats_read(q))
    assert suggestions(body["totals"]) == {"helpful": 2, "unhelpful": 1, "rate": 0.6667}
    assert body["totals"]["conversations"] == 1
    assert body["totals"]["first_response"]["count"] == 1

    q = StatsQuery(day, day + 86400, "channel", ZoneInfo("UTC"), day + 86400)
    body = report(q, *await store.stats_read(q))
    by_channel = {g["key"]: suggestions(g) for g in body["groups"]}
    assert by_channel["chat"] == {"helpful": 2, "unhelpful": 0, "rate": 1.0}
    assert by_channel["shop"] == {"helpful": 0, "unhelpful": 1, "rate": 0.0}

    q = StatsQuery(day, day + 2 * 86400, "day", BERLIN, day + 2 * 86400)
    body = report(q, *await store.stats_read(q))
    by_day = {g["key"]: suggestions(g)["helpful"] for g in body["groups"]}  # type: ignore[index]
    assert by_day["2026-03-02"] == 2
    csv_rows = list(csv.DictReader(io.StringIO(csv_text(body))))
    assert sum(int(r["suggestions_helpful"] or 0) for r in csv_rows) >= 2
    await store.close()
