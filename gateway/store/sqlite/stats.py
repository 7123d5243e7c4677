"""The SQLite store's KPI rollups (migration 14) and the reads behind `/v1/stats`.

The event log is the source: `stats_fold` reads the events after its cursor (kept in
`kv stats/cursor`) and folds them, in the same transaction that advances the cursor, into
`kpi_conversations` (what the fold remembers per conversation between events) and
`kpi_facts` (one row per message, response, resolution, ... with the channel, queue and
agent it counts for), `kpi_slots` (counts per 15 minutes) and `kpi_keys` (the channels,
queues and agents named). A fold is atomic and idempotent: two instances folding at once
are serialised by the write lock and the second finds nothing left to do. The facts
outlive the event log's retention.

`stats_read` runs on the store's thread. Counts are counts of index ranges (per channel or
queue), sums of `kpi_agent_days` (per agent and UTC day, migration 22) or of slots (per
local day or hour), never a scan. The timed figures
in total and by channel or queue: the period's whole UTC days from `kpi_hist` (daily
histograms per figure, in total and per channel and queue: one aggregate per figure and
dimension), its ragged ends from the samples. By agent, day or hour (a few hundred samples
per agent and week, or per hour, spread over as many bins: histograms do not compress)
from `kpi_samples` (migration 22, gateway/store/sqlite/stats_samples.py: each slot's or
agent-day's samples packed in one row), exact. For one channel, or with a `duration`, every
sample of the period is read (one range read per kind, in runs of one key, split column by
column in C) and sorted in Python for the exact median and p90 (a window function in
SQLite cost five times more).

Since migration 16 the fold also decides SLA targets (`kpi_sla`, facts `sla_met_*` and
`sla_breached_*`; the definition is `DEFINITIONS["sla"]`) and keeps business seconds beside
the calendar ones (`kpi_facts.business`).
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import Identity
from gateway.kpis.figures import (
    BUSINESS,
    COUNTED,
    DAY,
    HIST_FIGURES,
    SLOT,
    SLOTTED,
    Backlog,
    Buckets,
    Duration,
    Group,
    Hist,
    Key,
    StatsQuery,
    SurveyTally,
    TimedFact,
    Worktime,
    bucket_label,
    fact_samples,
    hist_add,
    hist_bin,
    hist_summary,
    segments,
    summarize,
)
from gateway.kpis.samples import Pending, sample_accumulate, sample_rows
from gateway.model import Event, NewEvent, loads
from gateway.store.base import StatsStore
from gateway.store.sqlite.stats_samples import (
    GROUPINGS,
    SAMPLES_SAVE,
    samples_backfill,
    timed_from_samples,
)
from gateway.store.timekeeping import SLA_EVENTS

log = logging.getLogger("switchboard.stats")

CURSOR_NS, CURSOR_KEY = "stats", "cursor"
# The reads below are written once for both stores: a generator yields each query (SQL with
# `?` marks, and its arguments) and is sent back the rows; `drive` runs one on an SQLite
# connection, the PostgreSQL store (gateway/store/postgres/stats.py) on asyncpg.
Query = tuple[str, Sequence[Any]]
Rows = Iterable[Sequence[Any]]
Reads = Generator[Query, Rows, Any]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs in the SQL of the reads: whether the survey table exists (a row when it
    does), and the integer part of a non-negative number (`{}` is the expression)."""

    has_surveys: str
    integer: str


SQLITE = Dialect(
    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='survey_responses'",
    "CAST({} AS INTEGER)",
)


def drive(conn: sqlite3.Connection, reads: Generator[Query, Rows, Any]) -> Any:
    """Run `reads` on `conn`: each query's cursor is sent back as its rows."""
    try:
        query = next(reads)
        while True:
            query = reads.send(conn.execute(query[0], query[1]))
    except StopIteration as done:
        return done.value


def _same(a: Any, b: float) -> bool:
    return a is not None and abs(float(a) - b) < 1e-6


def first_row(rows: Rows) -> Sequence[Any] | None:
    return next(iter(rows), None)


SURVEY_COLS = (
    "id, conversation_id, contact_id, channel, kind, score, comment, agent_id, queue,"
    " sent_at, answered_at"
)


@dataclass(slots=True)
class _Conv:
    conversation_id: str
    channel: str
    queue: str
    agent: str | None
    created_at: float
    cycle_started_at: float
    assigned_at: float | None
    first_response_at: float | None
    first_resolved_at: float | None
    replies: int
    reopens: int
    wait_started_at: float | None
    awaiting: float
    active: int


# A _Conv's fields after created_at and cycle_started_at, for facts of no conversation.
_NO_CONV = (None, None, None, 0, 0, None, 0.0, 0)

_KCOLS = (
    "conversation_id, channel, queue, agent, created_at, cycle_started_at, assigned_at,"
    " first_response_at, first_resolved_at, replies, reopens, wait_started_at, awaiting, active"
)
STAMP_COLS = (
    "channel, queue, assignee, created_at, assigned_at, first_response_at, resolved_at, status"
)
MESSAGE_COLS = "channel, sender_type, sender_id, automated"
FACT_COLS = "kind, at, seq, start, start2, value, conversation_id, channel, queue, agent, business"
SLA_ROW = "SELECT targets, fired FROM sla WHERE conversation_id = ?"
SLA_DONE = "SELECT outcome FROM kpi_sla WHERE conversation_id = ? AND target = ? AND since = ?"
SLA_SAVE = "INSERT INTO kpi_sla(conversation_id, target, since, outcome) VALUES (?,?,?,?)"
# With SLAs the fold stops before the first event the SLA clocks have not read that changes
# them (later ones wait for the clocks): each target's outcome is read as the clocks saw it.
SLA_UNREAD = (
    "SELECT MIN(id) FROM events WHERE id > (SELECT event_id FROM sla_cursor)"
    f" AND type IN ({', '.join(repr(t) for t in SLA_EVENTS)})"
)
VOID_FIRST_CONTACT = (
    "UPDATE kpi_facts SET value = 0 WHERE kind = 'first_resolution' AND at = ?"
    " AND conversation_id = ? AND value = 1"
)


class _Fold:
    """One fold pass inside one transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        worktime: Worktime | None = None,
        sla: bool = False,
    ) -> None:
        self.conn = conn
        # Business seconds of a queue between two instants (None: not computed).
        self.worktime = worktime
        # Decide SLA targets (the SLA clocks have read every event this fold folds).
        self.sla = sla
        self.sla_done: dict[tuple[str, str, float], str | None] = {}
        self.sla_new: list[tuple[str, str, float, str]] = []
        self.hist: dict[tuple[str, str, str, int], Hist] = {}
        self.samples: Pending = {}
        self.convs: dict[str, _Conv] = {}
        self.facts: list[tuple[Any, ...]] = []
        self.first_resolutions: dict[str, int] = {}  # conversation → its fact in `facts`
        self.slot_adjust: dict[tuple[str, int], int] = {}
        self.timed: list[TimedFact] = []
        self.seq = 0

    def conv(self, conversation_id: str) -> _Conv | None:
        found = self.convs.get(conversation_id)
        if found is not None:
            return found
        row = self.stored(conversation_id)
        if row is None:
            # Created before the fold saw it (events pruned before migration 14): start
            # from the conversation's stamps.
            base = self.stamps(conversation_id)
            if base is None:
                return None
            active = int(base[7] in ("open", "assigned", "pending"))
            found = _Conv(
                conversation_id,
                base[0],
                base[1],
                base[2],
                base[3],
                base[3],
                base[4],
                base[5],
                base[6],
                0,
                0,
                None,
                0.0,
                active,
            )
        else:
            found = _Conv(*row)
        self.convs[conversation_id] = found
        return found

    # What the fold reads: overridden by a store that reads ahead (PostgreSQL).
    def stored(self, conversation_id: str) -> Sequence[Any] | None:
        """The conversation's `kpi_conversations` row (`_KCOLS`)."""
        assert self.conn is not None
        row: Sequence[Any] | None = self.conn.execute(
            f"SELECT {_KCOLS} FROM kpi_conversations WHERE conversation_id=?", (conversation_id,)
        ).fetchone()
        return row

    def stamps(self, conversation_id: str) -> Sequence[Any] | None:
        """The conversation's own row (`STAMP_COLS`)."""
        assert self.conn is not None
        row: Sequence[Any] | None = self.conn.execute(
            f"SELECT {STAMP_COLS} FROM conversations WHERE id=?", (conversation_id,)
        ).fetchone()
        return row

    def fact(
        self,
        kind: str,
        at: float,
        c: _Conv,
        *,
        start: float | None = None,
        start2: float | None = None,
        value: float | None = None,
        channel: str | None = None,
        agent: str | None = None,
        agent_given: bool = False,
        business: float | None = None,
    ) -> None:
        self.seq += 1
        row = (
            kind,
            at,
            self.seq,
            start,
            start2,
            value,
            c.conversation_id,
            channel or c.channel,
            c.queue,
            agent if agent_given else c.agent,
            business,
        )
        if kind == "first_resolution":
            self.first_resolutions[c.conversation_id] = len(self.facts)
        elif kind in HIST_FIGURES:
            hist_accumulate(self.hist, row)
            sample_accumulate(self.samples, row)
        self.facts.append(row)

    def message(self, message_id: str) -> Sequence[Any] | None:
        """The message's `MESSAGE_COLS`."""
        assert self.conn is not None
        row: Sequence[Any] | None = self.conn.execute(
            f"SELECT {MESSAGE_COLS} FROM messages WHERE id=?",
            (message_id,),
        ).fetchone()
        return row

    def apply(self, event_id: int, kind: str, at: float, data: dict[str, Any]) -> None:
        self.seq = event_id * 16
        if kind == "conversation.created":
            d = data.get("conversation") or {}
            cid = d.get("id")
            if not cid:
                return
            # Started by us (issue 15, proactive outreach): nobody waits for a first
            # response, so none is measured; the customer's answers get next responses.
            started = isinstance(d.get("routing"), dict) and "outreach" in d["routing"]
            c = _Conv(
                cid,
                d["channel"],
                d["queue"],
                d.get("assignee"),
                at,
                at,
                None,
                at if started else None,
                None,
                0,
                0,
                None,
                0.0,
                1,
            )
            self.convs[cid] = c
            self.fact("created", at, c)
            return
        if kind == "kb.suggestion.answered":
            # Issue 15: a visitor said whether the widget's articles answered the question
            # (before any conversation: `conversation_id` and `queue` are empty).
            helpful = data.get("helpful") is True
            none = _Conv("", str(data.get("channel") or ""), "", None, at, at, *_NO_CONV)
            self.fact("kb_helpful" if helpful else "kb_unhelpful", at, none)
            return
        cid = data.get("conversation_id") or (data.get("conversation") or {}).get("id")
        if not cid:
            return
        found = self.conv(cid)
        if found is None:
            return
        c = found
        if kind == "message.received":
            m = self.message(data.get("message_id", ""))
            if m is None:
                return
            self.fact("in", at, c, channel=m[0])
            if c.wait_started_at is None:
                c.wait_started_at = at
        elif kind == "message.queued":
            m = self.message(data.get("message_id", ""))
            if m is None or m[1] != "agent" or m[3]:
                return
            agent = m[2]
            c.replies += 1
            self.fact("out", at, c, channel=m[0], agent=agent, agent_given=True)
            if c.first_response_at is None:
                c.first_response_at = at
                self.fact(
                    "first_response",
                    at,
                    c,
                    start=c.created_at,
                    agent=agent,
                    agent_given=True,
                    business=self.business(c.queue, c.created_at, at),
                )
                self.timed.append(
                    TimedFact("first_response", at - c.created_at, c.channel, c.queue)
                )
                self.sla_met(c, "first_response", 0.0, at)
            elif c.wait_started_at is not None:
                self.fact(
                    "next_response",
                    at,
                    c,
                    start=c.wait_started_at,
                    agent=agent,
                    agent_given=True,
                    business=self.business(c.queue, c.wait_started_at, at),
                )
                self.sla_met(c, "next_response", c.wait_started_at, at)
            if c.wait_started_at is not None:
                c.awaiting += at - c.wait_started_at
                c.wait_started_at = None
        elif kind == "conversation.assigned":
            c.agent = data.get("agent")
            c.queue = data.get("queue") or c.queue
            c.assigned_at = at
        elif kind == "conversation.transferred":
            c.queue = data.get("queue") or c.queue
            c.agent, c.assigned_at = None, None
        elif kind == "conversation.resolved":
            if c.wait_started_at is not None:
                c.awaiting += at - c.wait_started_at
                c.wait_started_at = None
            self.fact(
                "resolved",
                at,
                c,
                start=c.cycle_started_at,
                start2=c.assigned_at,
                value=c.awaiting,
                business=self.business(c.queue, c.cycle_started_at, at),
            )
            if c.first_resolved_at is None:
                self.sla_met(c, "resolution", 0.0, at)
            self.timed.append(TimedFact("resolution", at - c.cycle_started_at, c.channel, c.queue))
            if c.first_resolved_at is None:
                # First-contact so far: at most one agent reply, and (as yet) never reopened.
                c.first_resolved_at = at
                self.fact("first_resolution", at, c, value=1.0 if c.replies <= 1 else 0.0)
            if c.replies == 0 and str(data.get("by") or "").startswith("bot"):
                self.fact("self_served", at, c)  # issue 15: a bot resolved it, no agent replied
            c.active, c.awaiting = 0, 0.0
        elif kind == "conversation.reopened":
            if c.reopens == 0 and c.first_resolved_at is not None:
                self.not_first_contact(c)
            c.reopens += 1
            self.fact("reopened", at, c)
            c.cycle_started_at, c.active, c.awaiting = at, 1, 0.0
            c.agent, c.assigned_at, c.wait_started_at = None, None, None
        elif kind == "conversation.abandoned":
            self.fact("abandoned", at, c)
        elif kind == "sla.breached" and self.sla:
            target = str(data.get("target", ""))
            if target == "next_response":
                if c.wait_started_at is None:
                    return  # met late: decided at the reply, from the clocks' record
                since = c.wait_started_at
            elif target in ("first_response", "resolution"):
                since = 0.0
            else:
                return
            due = data.get("due_at")
            self.sla_decide(c, target, since, "breached", float(due) if due else at)

    # --- SLA targets ---------------------------------------------------------------------
    def business(self, queue: str, a: float, b: float) -> float | None:
        return None if self.worktime is None else self.worktime(queue, a, b)

    def sla_met(self, c: _Conv, target: str, since: float, at: float) -> None:
        """A reply (or first resolution) at `at` ends `target`: met, or breached if the SLA
        clocks recorded a breach of it (or its due time passed), or nothing when the
        conversation's SLA has no such target."""
        if not self.sla or self.decided(c.conversation_id, target, since):
            return
        found = self.sla_row(c.conversation_id)
        if found is None:
            return
        targets, fired = loads(found[0]), loads(found[1])
        t = targets.get(target)
        if t is None:
            return
        done = fired.get(target) or {}
        same = target != "next_response" or _same(t.get("since"), since)
        if target == "next_response" and not _same(done.get("since"), since):
            done = {}
        due = t.get("due_at") if same else None
        if "breached" in done or (due is not None and at > due + 1e-6):
            self.sla_decide(c, target, since, "breached", due if due is not None else at)
        else:
            self.sla_decide(c, target, since, "met", at)

    def sla_decide(self, c: _Conv, target: str, since: float, outcome: str, at: float) -> None:
        """The first decision of a target wins."""
        if self.decided(c.conversation_id, target, since):
            return
        self.sla_done[(c.conversation_id, target, since)] = outcome
        self.sla_new.append((c.conversation_id, target, since, outcome))
        self.fact(f"sla_{outcome}_{target}", at, c)

    def decided(self, conversation_id: str, target: str, since: float) -> bool:
        key = (conversation_id, target, since)
        if key not in self.sla_done:
            self.sla_done[key] = self.stored_outcome(*key)
        return self.sla_done[key] is not None

    def stored_outcome(self, conversation_id: str, target: str, since: float) -> str | None:
        assert self.conn is not None
        row = self.conn.execute(SLA_DONE, (conversation_id, target, since)).fetchone()
        return None if row is None else str(row[0])

    def sla_row(self, conversation_id: str) -> Sequence[Any] | None:
        """The conversation's SLA clocks (`targets`, `fired` as JSON), None: no SLA."""
        assert self.conn is not None
        row: Sequence[Any] | None = self.conn.execute(SLA_ROW, (conversation_id,)).fetchone()
        return row

    def not_first_contact(self, c: _Conv) -> None:
        """A reopening: the conversation's first resolution was not first-contact after all."""
        index = self.first_resolutions.get(c.conversation_id)
        if index is not None:
            row = self.facts[index]
            self.facts[index] = (*row[:5], 0.0, *row[6:])
            return
        at = c.first_resolved_at
        if at is not None and self.void_first_contact(at, c.conversation_id):
            self.unslot_first_contact(at)

    def void_first_contact(self, at: float, conversation_id: str) -> bool:
        """An earlier fold's first resolution at `at` is no first-contact one: whether it
        was counted as one."""
        assert self.conn is not None
        cur = self.conn.execute(VOID_FIRST_CONTACT, (at, conversation_id))
        return bool(cur.rowcount)

    def unslot_first_contact(self, at: float) -> None:
        slot = ("first_contact", int(at // SLOT))
        self.slot_adjust[slot] = self.slot_adjust.get(slot, 0) - 1

    def conv_rows(self) -> list[tuple[Any, ...]]:
        """The `kpi_conversations` rows (`_KCOLS`) of the conversations this fold touched."""
        return [
            (
                c.conversation_id,
                c.channel,
                c.queue,
                c.agent,
                c.created_at,
                c.cycle_started_at,
                c.assigned_at,
                c.first_response_at,
                c.first_resolved_at,
                c.replies,
                c.reopens,
                c.wait_started_at,
                c.awaiting,
                c.active,
            )
            for c in self.convs.values()
        ]

    def tallies(self) -> tuple[dict[tuple[str, int], int], set[tuple[str, str]]]:
        """What the facts add to `kpi_slots` ((kind, slot) → n) and `kpi_keys`."""
        slots: dict[tuple[str, int], int] = dict(self.slot_adjust)
        keys: set[tuple[str, str]] = set()
        for f in self.facts:
            if f[0] in SLOTTED:
                number = int(f[1] // SLOT)
                slots[(f[0], number)] = slots.get((f[0], number), 0) + 1
                if f[0] == "first_resolution" and f[5]:
                    first = ("first_contact", number)
                    slots[first] = slots.get(first, 0) + 1
            keys.update((("channel", f[7]), ("queue", f[8]), ("agent", f[9] or "")))
        return slots, keys

    def agent_days(self) -> list[tuple[int, str, str, int]]:
        """What the facts add to `kpi_agent_days`: (UTC day, kind, agent, n)."""
        out: dict[tuple[int, str, str], int] = {}
        for f in self.facts:
            k = (int(f[1] // DAY), f[0], f[9] or "")
            out[k] = out.get(k, 0) + 1
        return [(*k, n) for k, n in out.items()]

    def save(self) -> None:
        assert self.conn is not None
        self.conn.executemany(
            f"INSERT OR REPLACE INTO kpi_conversations({_KCOLS}) VALUES ({','.join('?' * 14)})",
            self.conv_rows(),
        )
        self.conn.executemany(
            f"INSERT OR IGNORE INTO kpi_facts({FACT_COLS}) VALUES ({','.join('?' * 11)})",
            self.facts,
        )
        self.conn.executemany(SLA_SAVE + " ON CONFLICT DO NOTHING", self.sla_new)
        self.conn.executemany(HIST_SAVE, hist_rows(self.hist))
        self.conn.executemany(SAMPLES_SAVE, sample_rows(self.samples))
        slots, keys = self.tallies()
        self.conn.executemany(
            "INSERT INTO kpi_slots(kind, slot, n) VALUES (?,?,?)"
            " ON CONFLICT(kind, slot) DO UPDATE SET n = n + excluded.n",
            [(k, number, n) for (k, number), n in slots.items()],
        )
        self.conn.executemany("INSERT OR IGNORE INTO kpi_keys(dim, value) VALUES (?,?)", keys)
        self.conn.executemany(
            "INSERT INTO kpi_agent_days(day, kind, agent, n) VALUES (?,?,?,?)"
            " ON CONFLICT(day, kind, agent) DO UPDATE SET n = n + excluded.n",
            self.agent_days(),
        )


def hist_accumulate(hist: dict[tuple[str, str, str, int], Hist], row: Sequence[Any]) -> None:
    """Count a timed fact's samples in the histograms of its UTC day and week (in total, and
    by its channel and queue; by agent the packed samples are read: `kpi_samples`)."""
    day = int(row[1] // DAY)
    week = week_row(day)
    keys = (("", ""), ("channel", row[7]), ("queue", row[8]))
    for figure, v in fact_samples(row[0], row):
        b = hist_bin(v)
        for dim, key in keys:
            hist_add(hist.setdefault((figure, dim, key, day), {}), b, 1, v, v, v)
            hist_add(hist.setdefault((figure, dim, key, week), {}), b, 1, v, v, v)


def week_row(day: int) -> int:
    """The `kpi_hist.day` of the UTC week (Monday to Sunday) holding `day`: weeks are kept
    as negative numbers, -1 - week, where week w spans the days [7w - 3, 7w + 4)."""
    return -1 - (day + 3) // 7


def hist_ranges(first: int, last: int) -> list[tuple[int, int]]:
    """The `kpi_hist.day` ranges that count the days [first, last) once: its whole weeks,
    and the days before and after them."""
    wf, wl = -(-(first + 3) // 7), (last + 3) // 7
    if wf >= wl:
        return [(first, last)]
    out = [(-wl, -wf), (first, 7 * wf - 3), (7 * wl - 3, last)]
    return [(a, b) for a, b in out if a < b]


def hist_rows(hist: dict[tuple[str, str, str, int], Hist]) -> list[tuple[Any, ...]]:
    """`kpi_hist` rows (HIST_COLS) to add."""
    return [
        (figure, dim, key, day, b, x.n, x.total, x.lo, x.hi)
        for (figure, dim, key, day), h in hist.items()
        for b, x in h.items()
    ]


HIST_COLS = "kind, dim, key, day, bin, n, total, lo, hi"
HIST_SAVE = (
    f"INSERT INTO kpi_hist({HIST_COLS}) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT(kind, dim, day, key, bin) DO UPDATE SET n = n + excluded.n,"
    " total = total + excluded.total, lo = MIN(lo, excluded.lo), hi = MAX(hi, excluded.hi)"
)
HIST_KEY = "hist"  # kv stats/hist: the histograms hold every timed fact (migration 16)
TIMED_FACTS = (
    f"SELECT {FACT_COLS} FROM kpi_facts WHERE kind IN ({', '.join(repr(k) for k in HIST_FIGURES)})"
)


def hist_backfill(conn: sqlite3.Connection) -> None:
    """Once, after migration 16: count the facts folded before it in the histograms."""
    if conn.execute(
        "SELECT 1 FROM kv WHERE namespace=? AND key=?", (CURSOR_NS, HIST_KEY)
    ).fetchone():
        return
    hist: dict[tuple[str, str, str, int], Hist] = {}
    for row in conn.execute(TIMED_FACTS):
        hist_accumulate(hist, row)
    conn.executemany(HIST_SAVE, hist_rows(hist))
    conn.execute("INSERT INTO kv(namespace, key, value) VALUES (?,?,'1')", (CURSOR_NS, HIST_KEY))


class SqliteStats(StatsStore):
    """Mixed into `SqliteStore`, which provides `_tx`, `_run` and `_events`."""

    _tx: Callable[..., Any]
    _run: Callable[..., Any]
    _events: Callable[[sqlite3.Connection, float, list[NewEvent]], list[Event]]

    # --- folding the event log ---------------------------------------------------------------
    async def stats_fold(
        self, limit: int = 2000, worktime: Worktime | None = None, sla: bool = False
    ) -> tuple[int, list[TimedFact]]:
        """Fold up to `limit` events after the cursor; (events folded, timed facts).
        `worktime(queue, a, b)`: business seconds, kept beside the calendar ones. With `sla`
        the fold decides SLA targets, and stops before an event the SLA clocks have not read."""

        def op(conn: sqlite3.Connection) -> tuple[int, list[TimedFact]]:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (CURSOR_NS, CURSOR_KEY)
            ).fetchone()
            cursor = int(row[0]) if row else 0
            hist_backfill(conn)
            samples_backfill(conn, CURSOR_NS, TIMED_FACTS)
            unread = conn.execute(SLA_UNREAD).fetchone()[0] if sla else None
            upto = 2**62 if unread is None else int(unread) - 1
            events = conn.execute(
                "SELECT id, type, at, data FROM events WHERE id > ? AND id <= ?"
                " ORDER BY id LIMIT ?",
                (cursor, upto, limit),
            ).fetchall()
            if not events:
                return 0, []
            if events[0][0] != cursor + 1 and cursor > 0:
                log.warning(
                    "stats fold skipped pruned events",
                    extra={"cursor": cursor, "next": events[0][0]},
                )
            fold = _Fold(conn, worktime, sla)
            for event_id, kind, at, data in events:
                fold.apply(int(event_id), kind, float(at), loads(data))
            fold.save()
            conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                (CURSOR_NS, CURSOR_KEY, str(events[-1][0])),
            )
            return len(events), fold.timed

        result: tuple[int, list[TimedFact]] = await self._tx(op)
        return result

    # --- reading -----------------------------------------------------------------------------
    async def stats_read(
        self, query: StatsQuery, duration: Duration | None = None
    ) -> tuple[Group, dict[Key, Group] | None]:
        """The raw figures of the period: the totals, and each group's when grouped.
        `duration(start, end)` replaces calendar seconds (e.g. business hours)."""

        def op(conn: sqlite3.Connection) -> tuple[Group, dict[Key, Group] | None]:
            found: tuple[Group, dict[Key, Group] | None] = drive(
                conn, read(query, duration, SQLITE)
            )
            return found

        result: tuple[Group, dict[Key, Group] | None] = await self._run(op)
        return result

    async def survey_rows(self, start: float, end: float) -> list[tuple[Any, ...]]:
        """Survey responses sent in [start, end), oldest first; none before surveys exist."""

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if first_row(conn.execute(SQLITE.has_surveys)) is None:
                return []
            return conn.execute(
                f"SELECT {SURVEY_COLS} FROM survey_responses WHERE sent_at >= ? AND sent_at < ?"
                " ORDER BY sent_at, id",
                (start, end),
            ).fetchall()

        result: list[tuple[Any, ...]] = await self._run(op)
        return result

    async def stats_gauges(self, now: float, survey_window: float) -> dict[str, Any]:
        """For Prometheus: backlog and waiting by queue, agents online, and the survey
        scores of the last `survey_window` seconds."""

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            backlog = {
                str(r[0]): (int(r[1]), int(r[2]))
                for r in conn.execute(
                    "SELECT queue, COUNT(*), COUNT(wait_started_at) FROM kpi_conversations"
                    " WHERE active = 1 GROUP BY queue"
                )
            }
            online = int(
                conn.execute("SELECT COUNT(*) FROM agents WHERE presence='online'").fetchone()[0]
            )
            tallies = drive(conn, surveys(now - survey_window, now, lambda row, i: None, SQLITE))
            return {"backlog": backlog, "online": online, "surveys": tallies.get(None)}

        result: dict[str, Any] = await self._run(op)
        return result

    # --- abandonment -------------------------------------------------------------------------
    async def record_departure(
        self, identity: Identity, left_at: float, channel: str, now: float
    ) -> list[Event]:
        """A live-chat visitor left: their active conversation on `channel` is abandoned if
        no agent had replied by then (`conversation.abandoned`, once per conversation)."""

        def op(conn: sqlite3.Connection) -> list[Event]:
            row = conn.execute(
                "SELECT c.id, c.first_response_at FROM identities i"
                " JOIN conversations c ON c.contact_id = i.contact_id"
                " WHERE i.kind=? AND i.address=? AND c.channel=?"
                " AND c.status IN ('open','assigned','pending')"
                " ORDER BY c.created_at DESC LIMIT 1",
                (identity.kind, identity.address, channel),
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= left_at):
                return []
            seen = conn.execute(
                "SELECT 1 FROM kv WHERE namespace='stats/abandoned' AND key=?", (row[0],)
            ).fetchone()
            if seen is not None:
                return []
            conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ('stats/abandoned', ?, ?)",
                (row[0], str(left_at)),
            )
            return self._events(
                conn,
                now,
                [
                    NewEvent(
                        "conversation.abandoned",
                        {"conversation_id": row[0], "channel": channel, "left_at": left_at},
                    )
                ],
            )

        result: list[Event] = await self._tx(op)
        return result


DIMS = ("channel", "queue", "agent")


def _count_range(
    kind: str, start: float, end: float, dim: str, value: str
) -> Generator[Query, Rows, int]:
    """The facts of one kind and one channel/queue/agent in [start, end): an index range."""
    if dim == "agent" and value == "":
        sql = (
            "SELECT COUNT(*) FROM kpi_facts WHERE kind = ? AND agent IS NULL AND at >= ? AND at < ?"
        )
        row = first_row((yield sql, (kind, start, end)))
    else:
        sql = f"SELECT COUNT(*) FROM kpi_facts WHERE kind = ? AND {dim} = ? AND at >= ? AND at < ?"
        row = first_row((yield sql, (kind, value, start, end)))
    assert row is not None
    return int(row[0])


def read(
    q: StatsQuery, duration: Duration | None, dialect: Dialect
) -> Generator[Query, Rows, tuple[Group, dict[Key, Group] | None]]:
    """The totals and (when grouped) each group's raw figures, in one pass per fact kind."""
    by = q.group_by
    buckets = Buckets(by, q.start, q.end, q.zone) if by in ("day", "hour") else None
    totals = Group()
    groups: dict[Key, Group] = {}

    def group(key: Key) -> Group:
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group()
        return g

    span = (q.start, q.end)
    # Only one channel's facts (`?channel=`): each read below adds this.
    cf, cargs = (" AND channel = ?", (q.channel,)) if q.channel else ("", ())
    # --- counts -------------------------------------------------------------------------------
    if q.channel:
        for kind in COUNTED:  # a count of an index range
            totals.counts[kind] = yield from _count_range(
                kind, q.start, q.end, "channel", q.channel
            )
    else:
        # One read of the slots: by local day or hour each count goes to its bucket too.
        key_of: Callable[[float], Key] = buckets.key if buckets is not None else lambda at: None
        for (key, kind), n in (yield from _slot_counts(q, key_of)).items():
            totals.counts[kind] = totals.counts.get(kind, 0) + n
            if buckets is None:
                continue
            g = group(key)
            if kind == "first_resolution":
                g.resolved_first = n
            elif kind == "first_contact":
                g.first_contact = n
            else:
                g.counts[kind] = n
        totals.resolved_first = totals.counts.pop("first_resolution", 0)
        totals.first_contact = totals.counts.pop("first_contact", 0)
    if q.channel and by is not None:
        # One channel: its facts are one index range per kind, few enough to read.
        for kind in COUNTED:
            for k, at in (
                yield (
                    f"SELECT {'NULL' if by in ('day', 'hour') else by}, at FROM kpi_facts"
                    " WHERE kind = ? AND channel = ? AND at >= ? AND at < ?",
                    (kind, q.channel, *span),
                )
            ):
                counts = group(buckets.key(at) if buckets is not None else _key(k)).counts
                counts[kind] = counts.get(kind, 0) + 1
    elif by == "agent":
        yield from _agent_counts(q, group)
    elif by in DIMS:
        values = [r[0] for r in (yield "SELECT value FROM kpi_keys WHERE dim = ?", (by,))]
        for value in values:
            for kind in COUNTED:
                n = yield from _count_range(kind, q.start, q.end, by, value)
                if n:
                    group(value or None).counts[kind] = n

    # --- timed figures ------------------------------------------------------------------------
    key_sql, decode = _key_sql(by, q, dialect)
    # By channel or queue the histograms compress (thousands of samples per key and day);
    # by agent, day or hour they do not (a few hundred samples spread over as many bins):
    # there the packed samples are read, exact (gateway/kpis/samples.py).
    if duration is None and not q.channel and by in (None, "channel", "queue"):
        yield from _timed_from_histograms(q, totals, group)
    elif duration is None and not q.channel and by in GROUPINGS:
        yield from timed_from_samples(q, totals, group, FACT_COLS)
    else:
        yield from _timed_from_facts(q, duration, dialect, totals, group)

    # --- first-contact resolution (per channel, queue, agent; else counted in slots above) ----
    fcr_rows: Rows = (
        []
        if not q.channel and by in (None, "day", "hour")
        else (
            yield (
                f"SELECT {key_sql}, COUNT(*), SUM(value) FROM kpi_facts"
                f" WHERE kind = 'first_resolution' AND at >= ? AND at < ?{cf} GROUP BY 1",
                (*span, *cargs),
            )
        )
    )
    for k, resolved, first in fcr_rows:
        if q.channel:
            totals.resolved_first += int(resolved)
            totals.first_contact += int(first or 0)
        if by is not None:
            g = group(decode(k))
            g.resolved_first += int(resolved)
            g.first_contact += int(first or 0)

    # --- surveys ------------------------------------------------------------------------------
    column = {"channel": 2, "queue": 3, "agent": 4}.get(by or "")

    def survey_key(row: Sequence[Any], at_index: int) -> Key:
        if buckets is not None:
            return buckets.key(row[at_index])
        return None if column is None else _key(row[column])

    tallies = yield from surveys(q.start, q.end, lambda row, i: None, dialect, q.channel)
    totals.surveys = tallies.get(None)
    if by is not None:
        tallies = yield from surveys(q.start, q.end, survey_key, dialect, q.channel)
        for key, tally in tallies.items():
            group(key).surveys = tally

    # --- backlog (now) ------------------------------------------------------------------------
    backlog = first_row(
        (
            yield (
                "SELECT COUNT(*), COUNT(wait_started_at), MIN(wait_started_at)"
                f" FROM kpi_conversations WHERE active = 1{cf}",
                cargs,
            )
        )
    )
    assert backlog is not None
    n, waiting, oldest = backlog
    totals.backlog = Backlog(int(n), int(waiting), oldest)
    if by in DIMS:
        for k, n, waiting, oldest in (
            yield (
                f"SELECT {by}, COUNT(*), COUNT(wait_started_at), MIN(wait_started_at)"
                f" FROM kpi_conversations WHERE active = 1{cf} GROUP BY 1",
                cargs,
            )
        ):
            group(_key(k)).backlog = Backlog(int(n), int(waiting), oldest)
    return totals, (groups if by is not None else None)


def _timed_from_facts(
    q: StatsQuery,
    duration: Duration | None,
    dialect: Dialect,
    totals: Group,
    group: Callable[[Key], Group],
) -> Generator[Query, Rows, None]:
    """The timed figures from every sample of the period (exact): one range read per kind."""
    by = q.group_by
    span = (q.start, q.end)
    cf, cargs = (" AND channel = ?", (q.channel,)) if q.channel else ("", ())
    # The key in SQL (a column, or the local day/hour number), decoded per group afterwards:
    # the loops below touch each row once, with no call per row.
    key_sql, decode = _key_sql(by, q, dialect)
    samples: dict[str, dict[Key, list[float]]] = {}
    picks = (
        ("first_response", ("at - start", "business"), ("start",)),
        ("next_response", ("at - start", "business"), ("start",)),
        # One row, four figures: resolution, handling (when assigned), waiting for an agent,
        # and the resolution in business seconds.
        ("resolved", ("at - start", "at - start2", "value", "business"), ("start", "start2")),
    )
    names = {name: (name, f"{name}_business") for name in BUSINESS if name != "resolution"} | {
        "resolved": ("resolution", "handling", "awaiting", "resolution_business")
    }
    for kind, values_sql, starts in picks:
        figures = names.get(kind, (kind,))
        raw: list[dict[Any, list[float]]] = [{} for _ in figures]
        if duration is None:
            sql = (
                f"SELECT {key_sql}, {', '.join(values_sql)} FROM kpi_facts WHERE kind = ?"
                f" AND at >= ? AND at < ?{cf}"
            )
            # Rows in runs of one key (by time for a day or hour; sorted by the database for
            # a channel, queue or agent), then column by column: the per-sample work stays in
            # C (groupby, zip, comprehensions, sorts), no Python step per row.
            order = " ORDER BY 1" if by in DIMS else ""
            for k, key_rows in itertools.groupby(
                (yield sql + order, (kind, *span, *cargs)), operator.itemgetter(0)
            ):
                for i, column in enumerate(list(zip(*key_rows, strict=True))[1:]):
                    values = [v for v in column if v is not None]
                    if values:
                        found_list = raw[i].get(k)
                        if found_list is None:
                            raw[i][k] = values
                        else:
                            found_list.extend(values)
        else:
            sql = (
                f"SELECT {key_sql}, {', '.join(starts)}, at{', value' if kind == 'resolved' else ''}"
                f" FROM kpi_facts WHERE kind = ? AND at >= ? AND at < ?{cf}"
            )
            for row in (yield sql, (kind, *span, *cargs)):
                k, at = row[0], row[1 + len(starts)]
                for i, a in enumerate(row[1 : 1 + len(starts)]):
                    if a is not None:
                        raw[i].setdefault(k, []).append(duration(a, at))
                if kind == "resolved":  # a sum of waits: calendar seconds
                    raw[2].setdefault(k, []).append(row[-1])
        for name, per_key in zip(figures, raw, strict=True):
            by_key: dict[Key, list[float]] = {}
            for k, values in per_key.items():
                by_key.setdefault(decode(k), []).extend(values)
            samples[name] = by_key
    for kind, by_key in samples.items():
        for key, values in by_key.items():
            values.sort()
            if by is not None:
                found = summarize(values, presorted=True)
                if found is not None:
                    group(key).timed[kind] = found
        # Sorted runs merge in linear time.
        every: list[float] = []
        for values in by_key.values():
            every.extend(values)
        every.sort()
        found = summarize(every, presorted=True)
        if found is not None:
            totals.timed[kind] = found


HIST_READ = (
    "SELECT key, bin, SUM(n), SUM(total), MIN(lo), MAX(hi) FROM kpi_hist"
    " WHERE kind = ? AND dim = ? AND day >= ? AND day < ? GROUP BY key, bin"
)


def _timed_from_histograms(
    q: StatsQuery, totals: Group, group: Callable[[Key], Group]
) -> Generator[Query, Rows, None]:
    """The timed figures of the period's whole UTC days from the daily histograms
    (`kpi_hist`), and of its ragged ends from the samples; in total and by channel, queue
    or agent (see HIST_RATIO for the accuracy of median and p90)."""
    by = q.group_by
    dims = ("", by) if by else ("",)
    hists: dict[tuple[str, str], dict[str, Hist]] = {}
    first, last = math.ceil(q.start / DAY), math.floor(q.end / DAY)
    edges = [(q.start, q.end)]
    if first < last:
        edges = [(q.start, first * DAY), (last * DAY, q.end)]
        for figures in HIST_FIGURES.values():
            for figure, _ in figures:
                for dim in dims:
                    per_key = hists.setdefault((figure, dim), {})
                    for lo_day, hi_day in hist_ranges(first, last):
                        for key, b, n, total, lo, hi in (
                            yield (HIST_READ, (figure, dim, lo_day, hi_day))
                        ):
                            hist_add(per_key.setdefault(key, {}), int(b), int(n), total, lo, hi)
    column = {"channel": 7, "queue": 8, "agent": 9}.get(by or "")
    for a, b in edges:
        if b <= a:
            continue
        for kind in HIST_FIGURES:
            for row in (
                yield (
                    f"SELECT {FACT_COLS} FROM kpi_facts WHERE kind = ? AND at >= ? AND at < ?",
                    (kind, a, b),
                )
            ):
                for figure, v in fact_samples(kind, row):
                    k = hist_bin(v)
                    hist_add(hists.setdefault((figure, ""), {}).setdefault("", {}), k, 1, v, v, v)
                    if column is not None and by is not None:
                        key = row[column] or ""
                        per_key = hists.setdefault((figure, by), {})
                        hist_add(per_key.setdefault(key, {}), k, 1, v, v, v)
    for (figure, dim), per_key in hists.items():
        for key, h in per_key.items():
            found = hist_summary(h)
            if found is None:
                continue
            if dim == "":
                totals.timed[figure] = found
            else:
                group(_key(key)).timed[figure] = found


def _agent_counts(q: StatsQuery, group: Callable[[Key], Group]) -> Generator[Query, Rows, None]:
    """The counted kinds by agent: the period's whole UTC days from `kpi_agent_days`, its
    ragged ends from the facts."""
    first, last = math.ceil(q.start / DAY), math.floor(q.end / DAY)
    edges = [(q.start, q.end)]
    kinds = f"({', '.join(repr(k) for k in COUNTED)})"
    found: list[Rows] = []
    if first < last:
        edges = [(q.start, first * DAY), (last * DAY, q.end)]
        found.append(
            list(
                (
                    yield (
                        "SELECT kind, agent, SUM(n) FROM kpi_agent_days WHERE day >= ?"
                        f" AND day < ? AND kind IN {kinds} GROUP BY kind, agent",
                        (first, last),
                    )
                )
            )
        )
    for a, b in edges:
        if b > a:
            found.append(
                list(
                    (
                        yield (
                            "SELECT kind, agent, COUNT(*) FROM kpi_facts WHERE kind IN"
                            f" {kinds} AND at >= ? AND at < ? GROUP BY kind, agent",
                            (a, b),
                        )
                    )
                )
            )
    for rows in found:
        for kind, agent, n in rows:
            if n:
                counts = group(_key(agent)).counts
                counts[kind] = counts.get(kind, 0) + int(n)


def _slot_counts(
    q: StatsQuery, key_of: Callable[[float], Key]
) -> Generator[Query, Rows, dict[tuple[Key, str], int]]:
    """Counts of the slotted kinds by (key_of(instant), kind): whole 15-minute slots from
    `kpi_slots`, the period's ragged ends from the facts."""
    out: dict[tuple[Key, str], int] = {}
    lo, hi = math.ceil(q.start / SLOT), math.floor(q.end / SLOT)
    edges = [(q.start, q.end)]
    if lo < hi:
        for kind, slot, n in (
            yield "SELECT kind, slot, n FROM kpi_slots WHERE slot >= ? AND slot < ?", (lo, hi)
        ):
            k = (key_of(slot * SLOT), kind)
            out[k] = out.get(k, 0) + int(n)
        edges = [(q.start, lo * SLOT), (hi * SLOT, q.end)]
    for a, b in edges:
        if b <= a:
            continue
        for kind, at, value in (
            yield (
                "SELECT kind, at, value FROM kpi_facts WHERE at >= ? AND at < ? AND kind IN"
                f" ({','.join(repr(k) for k in SLOTTED)})",
                (a, b),
            )
        ):
            for name in (
                (kind, "first_contact") if kind == "first_resolution" and value else (kind,)
            ):
                k = (key_of(at), name)
                out[k] = out.get(k, 0) + 1
    return out


def _key_sql(by: str | None, q: StatsQuery, dialect: Dialect) -> tuple[str, Callable[[Any], Key]]:
    """The SQL of a fact's group key, and how to turn its value into the group's label."""
    if by is None:
        return "NULL", lambda raw: None
    if by not in ("day", "hour"):
        return by, _key
    parts = segments(q.start, q.end, q.zone)
    # The zone's offset where `at` falls: numbers computed here, written into the SQL.
    whens = "".join(f"WHEN at < {seg.end!r} THEN {i} " for i, seg in enumerate(parts[:-1]))
    index = f"(CASE {whens}ELSE {len(parts) - 1} END)" if whens else "0"
    offsets = "".join(f"WHEN at < {seg.end!r} THEN {seg.offset} " for seg in parts[:-1])
    offset = f"(CASE {offsets}ELSE {parts[-1].offset} END)" if offsets else str(parts[0].offset)
    size = 86400 if by == "day" else 3600
    # The local day or hour number, and (for an hour) its segment: a repeated hour stays two.
    sql = f"({dialect.integer.format(f'(at + {offset}) / {size}')} * 64 + {index})"

    def decode(raw: Any) -> Key:
        number, i = divmod(int(raw), 64)
        return bucket_label(by, number, parts[i].offset)

    return sql, decode


def _key(raw: Any) -> Key:
    return None if raw is None or raw == "" else str(raw)


def surveys(
    start: float,
    end: float,
    key_of: Callable[[Sequence[Any], int], Key],
    dialect: Dialect,
    channel: str | None = None,
) -> Generator[Query, Rows, dict[Key, SurveyTally]]:
    """Survey tallies by `key_of(row, index of the time column)`; {} while there is no survey
    table. Scores count by when they were answered, the response rate by when sent."""
    if first_row((yield dialect.has_surveys, ())) is None:
        return {}
    out: dict[Key, SurveyTally] = {}
    for row in (
        yield (
            "SELECT kind, score, channel, queue, agent_id, sent_at, answered_at"
            " FROM survey_responses"
            " WHERE (answered_at >= ? AND answered_at < ?) OR (sent_at >= ? AND sent_at < ?)",
            (start, end, start, end),
        )
    ):
        kind, score, sent, answered = row[0], row[1], row[5], row[6]
        if channel is not None and row[2] != channel:
            continue
        if sent is not None and start <= sent < end:
            t = out.setdefault(key_of(row, 5), SurveyTally())
            t.sent += 1
            t.answered += answered is not None
        if score is None or answered is None or not start <= answered < end:
            continue
        t = out.setdefault(key_of(row, 6), SurveyTally())
        if kind == "csat":
            t.csat_answers += 1
            t.csat_satisfied += score >= 4
        elif kind == "nps":
            t.nps_answers += 1
            t.nps_promoters += score >= 9
            t.nps_detractors += score <= 6
        elif kind == "ces":
            t.ces_answers += 1
            t.ces_sum += float(score)
    return out
