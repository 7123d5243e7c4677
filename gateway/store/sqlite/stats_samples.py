"""The packed samples of the timed figures (`kpi_samples`, migration 22; what they hold:
gateway/kpis/samples.py): kept by the fold, read for `/v1/stats` by agent, day and hour.

The read (`timed_from_samples`) is a generator that yields its queries, like the other
reads of gateway/store/sqlite/stats.py: the PostgreSQL store runs it too.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

from gateway.kpis.figures import (
    DAY,
    HIST_FIGURES,
    SLOT,
    Buckets,
    Group,
    Key,
    StatsQuery,
    fact_samples,
    summarize,
)
from gateway.kpis.samples import SAMPLE_COLS, Pending, sample_accumulate, sample_rows, unpack

Query = tuple[str, Sequence[Any]]
Rows = Iterable[Sequence[Any]]

SAMPLES_KEY = "samples"  # kv stats/samples: the arrays hold every timed fact (migration 22)
SAMPLES_SAVE = (
    f"INSERT INTO kpi_samples({SAMPLE_COLS}) VALUES (?,?,?,?,?)"
    # `||` makes TEXT of two BLOBs byte for byte (the store's databases are UTF-8); the cast
    # keeps the bytes as the BLOB they are.
    " ON CONFLICT(kind, dim, span, key) DO UPDATE SET"
    " samples = CAST(samples || excluded.samples AS BLOB)"
)
SAMPLES_READ = (
    "SELECT key, span, samples FROM kpi_samples"
    " WHERE kind = ? AND dim = ? AND span >= ? AND span < ?"
)
GROUPINGS = ("agent", "day", "hour")  # what `timed_from_samples` answers


def samples_backfill(conn: sqlite3.Connection, kv_ns: str, timed_facts: str) -> None:
    """Once, after migration 22: pack the samples of the facts folded before it
    (`timed_facts`: the SQL of every timed fact's FACT_COLS)."""
    if conn.execute(
        "SELECT 1 FROM kv WHERE namespace=? AND key=?", (kv_ns, SAMPLES_KEY)
    ).fetchone():
        return
    pending: Pending = {}
    for row in conn.execute(timed_facts):
        sample_accumulate(pending, row)
    conn.executemany(SAMPLES_SAVE, sample_rows(pending))
    conn.execute("INSERT INTO kv(namespace, key, value) VALUES (?,?,'1')", (kv_ns, SAMPLES_KEY))


def timed_from_samples(
    q: StatsQuery,
    totals: Group,
    group: Callable[[Key], Group],
    fact_cols: str,
) -> Generator[Query, Rows, None]:
    """The timed figures by agent, local day or hour, exact: the packed samples of the
    period's whole UTC days (by agent) or 15-minute slots (by day or hour, in any zone),
    and the samples of its ragged ends from the facts (`fact_cols`: FACT_COLS)."""
    by = q.group_by
    assert by in GROUPINGS, by
    buckets = None if by == "agent" else Buckets(by, q.start, q.end, q.zone)
    dim, size = ("agent", DAY) if buckets is None else ("", SLOT)
    first, last = math.ceil(q.start / size), math.floor(q.end / size)
    edges = [(q.start, q.end)]
    # figure → group → its stored arrays (joined), and the ragged ends' samples.
    blobs: dict[str, dict[Key, bytes]] = {}
    loose: dict[str, dict[Key, list[float]]] = {}
    if first < last:
        edges = [(q.start, first * size), (last * size, q.end)]
        labels: dict[int, Key] = {}  # slot → its local day or hour
        for figures in HIST_FIGURES.values():
            for figure, _ in figures:
                per_key: dict[Key, list[bytes]] = {}
                for key, span, blob in (yield (SAMPLES_READ, (figure, dim, first, last))):
                    if buckets is None:
                        k: Key = str(key) or None
                    else:
                        k = labels.get(span)
                        if k is None:
                            k = labels[span] = buckets.key(int(span) * size)
                    runs = per_key.get(k)
                    if runs is None:
                        per_key[k] = [bytes(blob)]
                    else:
                        runs.append(bytes(blob))
                blobs[figure] = {k: b"".join(runs) for k, runs in per_key.items()}
    for a, b in edges:
        if b <= a:
            continue
        for kind in HIST_FIGURES:
            for row in (
                yield (
                    f"SELECT {fact_cols} FROM kpi_facts WHERE kind = ? AND at >= ? AND at < ?",
                    (kind, a, b),
                )
            ):
                k = (row[9] or None) if buckets is None else buckets.key(row[1])
                for figure, v in fact_samples(kind, row):
                    loose.setdefault(figure, {}).setdefault(k, []).append(v)
    for figures in HIST_FIGURES.values():
        for figure, _ in figures:
            stored, extra = blobs.get(figure, {}), loose.get(figure, {})
            twin = figure.removesuffix("_business")
            if twin != figure and stored == blobs.get(twin, {}) and extra == loose.get(twin, {}):
                # The same samples, byte for byte, as the calendar figure's (a queue without
                # `routing.hours` is always open): the same figures, without sorting again.
                for key in stored.keys() | extra.keys():
                    found = group(key).timed.get(twin)
                    if found is not None:
                        group(key).timed[figure] = found
                if twin in totals.timed:
                    totals.timed[figure] = totals.timed[twin]
                continue
            every: list[float] = []
            for key in stored.keys() | extra.keys():
                values = unpack((stored.get(key, b""),))
                values.extend(extra.get(key, ()))
                ordered = sorted(values)
                one = summarize(ordered, presorted=True)
                if one is not None:
                    group(key).timed[figure] = one
                every.extend(ordered)
            every.sort()  # sorted runs: merged in linear time
            whole = summarize(every, presorted=True)
            if whole is not None:
                totals.timed[figure] = whole
