"""Grouped `/v1/stats` reads from the histograms (totals, channel, queue) equal the same
figures from every raw sample, within the stated bin accuracy (gateway/kpis/figures.py
HIST_RATIO: 1 s, or 1 % of the value); by agent, day (in any zone) and hour the packed
samples are read (gateway/kpis/samples.py), exactly.

The store is filled as the benchmark fills it (bench/stats.py: a month of conversations
written in bulk, then folded), small. The raw answer is the store's own sample read
(`duration` = calendar seconds forces it), so the two paths are compared on one store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.stats import fill, generate
from gateway.kpis.figures import Group, StatsQuery, Summary
from gateway.store.sqlite import SqliteStore

CALENDAR_FIGURES = ("first_response", "next_response", "resolution", "handling", "awaiting")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    db = tmp_path_factory.mktemp("stats") / "bench.db"

    async def build() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()
        fill(db, generate(600, 7))
        store = SqliteStore(db)
        await store.open()
        while (await store.stats_fold(5000, lambda queue, a, b: b - a))[0] > 0:
            pass
        await store.close()

    asyncio.run(build())
    return db


def close(a: Summary, b: Summary) -> None:
    assert a.count == b.count
    assert a.mean == pytest.approx(b.mean, rel=1e-9)
    for x, y in ((a.median, b.median), (a.p90, b.p90)):
        assert abs(x - y) <= max(1.0, 0.01 * y), (a, b)


def same_figures(fast: Group, raw: Group, exact: bool) -> None:
    for name in CALENDAR_FIGURES:
        assert (name in fast.timed) == (name in raw.timed), name
        if name in raw.timed:
            if exact:
                assert fast.timed[name] == raw.timed[name], name
            else:
                close(fast.timed[name], raw.timed[name])


async def answers(
    db: Path, group_by: str | None, tz: str
) -> tuple[tuple[Group, dict[object, Group] | None], tuple[Group, dict[object, Group] | None]]:
    zone = ZoneInfo(tz)
    # Not day-aligned in the zone: ragged ends on both sides.
    start = datetime(2026, 3, 2, 7, 30, tzinfo=zone).timestamp()
    end = datetime(2026, 3, 27, 16, 45, tzinfo=zone).timestamp()
    q = StatsQuery(start, end, group_by, zone, end + 60)
    store = SqliteStore(db)
    await store.open()
    try:
        fast = await store.stats_read(q)
        raw = await store.stats_read(q, lambda a, b: b - a)
    finally:
        await store.close()
    return fast, raw


@pytest.mark.parametrize(
    ("group_by", "tz", "exact"),
    [
        (None, "UTC", False),
        ("channel", "UTC", False),
        ("queue", "Europe/Berlin", False),
        ("day", "UTC", True),
        ("day", "Europe/Berlin", True),
        ("hour", "Europe/Berlin", True),
        ("agent", "Europe/Berlin", True),
    ],
)
async def test_grouped_answer_equals_the_raw_one(
    store_path: Path, group_by: str | None, tz: str, exact: bool
) -> None:
    (fast_totals, fast_groups), (raw_totals, raw_groups) = await answers(store_path, group_by, tz)
    assert raw_totals.timed["first_response"].count > 400  # the month is really there
    same_figures(fast_totals, raw_totals, exact)
    if group_by is None:
        assert fast_groups is None and raw_groups is None
        return
    assert fast_groups is not None and raw_groups is not None
    assert len(raw_groups) > 1
    with_samples = {k for k, g in raw_groups.items() if g.timed}
    assert with_samples == {k for k, g in fast_groups.items() if g.timed}
    for key in with_samples:
        same_figures(fast_groups[key], raw_groups[key], exact)
