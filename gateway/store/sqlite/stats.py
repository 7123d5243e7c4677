"""The SQLite store's KPI rollups (migration 14) and the reads behind `/v1/stats`.

The event log is the source: `stats_fold` reads the events after its cursor (kept in
`kv stats/cursor`) and folds them, in the same transaction that advances the cursor, into
`kpi_conversations` (what the fold remembers per conversation between events) and
`kpi_facts` (one row per message, response, resolution, ... with the channel, queue and
agent it counts for), `kpi_slots` (counts per 15 minutes) and `kpi_keys` (the channels,
queues and agents named). A fold is atomic and idempotent: two instances folding at once
are serialised by the write lock and the second finds nothing left to do. The facts
outlive the event log's retention.

`stats_read` runs on the store's thread. Counts are counts of index ranges (per channel,
queue or agent) or sums of slots (per local day or hour), never a scan; the samples of the
timed figures are one range read per kind, sorted in Python for the median and p90 (a
window function in SQLite cost five times more).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import Identity
from gateway.kpis.figures import (
    COUNTED,
    SLOT,
    SLOTTED,
    Backlog,
    Buckets,
    Duration,
    Group,
    Key,
    StatsQuery,
    SurveyTally,
    TimedFact,
    bucket_label,
    segments,
    summarize,
)
from gateway.model import Event, NewEvent, loads
from gateway.store.base import StatsStore

log = logging.getLogger("switchboard.stats")

CURSOR_NS, CURSOR_KEY = "stats", "cursor"
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


_KCOLS = (
    "conversation_id, channel, queue, agent, created_at, cycle_started_at, assigned_at,"
    " first_response_at, first_resolved_at, replies, reopens, wait_started_at, awaiting, active"
)


class _Fold:
    """One fold pass inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
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
        row = self.conn.execute(
            f"SELECT {_KCOLS} FROM kpi_conversations WHERE conversation_id=?", (conversation_id,)
        ).fetchone()
        if row is None:
            # Created before the fold saw it (events pruned before migration 14): start
            # from the conversation's stamps.
            base = self.conn.execute(
                "SELECT channel, queue, assignee, created_at, assigned_at, first_response_at,"
                " resolved_at, status FROM conversations WHERE id=?",
                (conversation_id,),
            ).fetchone()
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
        )
        if kind == "first_resolution":
            self.first_resolutions[c.conversation_id] = len(self.facts)
        self.facts.append(row)

    def message(self, message_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(
            "SELECT channel, sender_type, sender_id, automated FROM messages WHERE id=?",
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
            c = _Conv(
                cid,
                d["channel"],
                d["queue"],
                d.get("assignee"),
                at,
                at,
                None,
                None,
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
                    "first_response", at, c, start=c.created_at, agent=agent, agent_given=True
                )
                self.timed.append(
                    TimedFact("first_response", at - c.created_at, c.channel, c.queue)
                )
            elif c.wait_started_at is not None:
                self.fact(
                    "next_response", at, c, start=c.wait_started_at, agent=agent, agent_given=True
                )
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
                "resolved", at, c, start=c.cycle_started_at, start2=c.assigned_at, value=c.awaiting
            )
            self.timed.append(TimedFact("resolution", at - c.cycle_started_at, c.channel, c.queue))
            if c.first_resolved_at is None:
                # First-contact so far: at most one agent reply, and (as yet) never reopened.
                c.first_resolved_at = at
                self.fact("first_resolution", at, c, value=1.0 if c.replies <= 1 else 0.0)
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

    def not_first_contact(self, c: _Conv) -> None:
        """A reopening: the conversation's first resolution was not first-contact after all."""
        index = self.first_resolutions.get(c.conversation_id)
        if index is not None:
            row = self.facts[index]
            self.facts[index] = (*row[:5], 0.0, *row[6:])
            return
        at = c.first_resolved_at
        cur = self.conn.execute(
            "UPDATE kpi_facts SET value = 0 WHERE kind = 'first_resolution' AND at = ?"
            " AND conversation_id = ? AND value = 1",
            (at, c.conversation_id),
        )
        if cur.rowcount and at is not None:
            slot = ("first_contact", int(at // SLOT))
            self.slot_adjust[slot] = self.slot_adjust.get(slot, 0) - 1

    def save(self) -> None:
        self.conn.executemany(
            f"INSERT OR REPLACE INTO kpi_conversations({_KCOLS}) VALUES ({','.join('?' * 14)})",
            [
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
            ],
        )
        self.conn.executemany(
            "INSERT OR IGNORE INTO kpi_facts(kind, at, seq, start, start2, value,"
            " conversation_id, channel, queue, agent) VALUES (?,?,?,?,?,?,?,?,?,?)",
            self.facts,
        )
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
        self.conn.executemany(
            "INSERT INTO kpi_slots(kind, slot, n) VALUES (?,?,?)"
            " ON CONFLICT(kind, slot) DO UPDATE SET n = n + excluded.n",
            [(k, number, n) for (k, number), n in slots.items()],
        )
        self.conn.executemany("INSERT OR IGNORE INTO kpi_keys(dim, value) VALUES (?,?)", keys)


class SqliteStats(StatsStore):
    """Mixed into `SqliteStore`, which provides `_tx`, `_run` and `_events`."""

    _tx: Callable[..., Any]
    _run: Callable[..., Any]
    _events: Callable[[sqlite3.Connection, float, list[NewEvent]], list[Event]]

    # --- folding the event log ---------------------------------------------------------------
    async def stats_fold(self, limit: int = 2000) -> tuple[int, list[TimedFact]]:
        """Fold up to `limit` events after the cursor; (events folded, timed facts)."""

        def op(conn: sqlite3.Connection) -> tuple[int, list[TimedFact]]:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (CURSOR_NS, CURSOR_KEY)
            ).fetchone()
            cursor = int(row[0]) if row else 0
            events = conn.execute(
                "SELECT id, type, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            ).fetchall()
            if not events:
                return 0, []
            if events[0][0] != cursor + 1 and cursor > 0:
                log.warning(
                    "stats fold skipped pruned events",
                    extra={"cursor": cursor, "next": events[0][0]},
                )
            fold = _Fold(conn)
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
            return _read(conn, query, duration)

        result: tuple[Group, dict[Key, Group] | None] = await self._run(op)
        return result

    async def survey_rows(self, start: float, end: float) -> list[tuple[Any, ...]]:
        """Survey responses sent in [start, end), oldest first; none before surveys exist."""

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if not _has_surveys(conn):
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
            surveys = _surveys(conn, now - survey_window, now, lambda row, i: None).get(None)
            return {"backlog": backlog, "online": online, "surveys": surveys}

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


def _has_surveys(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='survey_responses'"
        ).fetchone()
        is not None
    )


DIMS = ("channel", "queue", "agent")


def _count_range(
    conn: sqlite3.Connection, kind: str, start: float, end: float, dim: str, value: str
) -> int:
    """The facts of one kind and one channel/queue/agent in [start, end): an index range."""
    if dim == "agent" and value == "":
        sql = (
            "SELECT COUNT(*) FROM kpi_facts WHERE kind = ? AND agent IS NULL AND at >= ? AND at < ?"
        )
        return int(conn.execute(sql, (kind, start, end)).fetchone()[0])
    sql = f"SELECT COUNT(*) FROM kpi_facts WHERE kind = ? AND {dim} = ? AND at >= ? AND at < ?"
    return int(conn.execute(sql, (kind, value, start, end)).fetchone()[0])


def _read(
    conn: sqlite3.Connection, q: StatsQuery, duration: Duration | None
) -> tuple[Group, dict[Key, Group] | None]:
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
            totals.counts[kind] = _count_range(conn, kind, q.start, q.end, "channel", q.channel)
    else:
        for (_, kind), n in _slot_counts(conn, q, lambda at: None).items():
            totals.counts[kind] = n
        totals.resolved_first = totals.counts.pop("first_resolution", 0)
        totals.first_contact = totals.counts.pop("first_contact", 0)
    if q.channel and by is not None:
        # One channel: its facts are one index range per kind, few enough to read.
        for kind in COUNTED:
            for k, at in conn.execute(
                f"SELECT {'NULL' if by in ('day', 'hour') else by}, at FROM kpi_facts"
                " WHERE kind = ? AND channel = ? AND at >= ? AND at < ?",
                (kind, q.channel, *span),
            ):
                counts = group(buckets.key(at) if buckets is not None else _key(k)).counts
                counts[kind] = counts.get(kind, 0) + 1
    elif by in DIMS:
        values = [r[0] for r in conn.execute("SELECT value FROM kpi_keys WHERE dim = ?", (by,))]
        for value in values:
            for kind in COUNTED:
                n = _count_range(conn, kind, q.start, q.end, by, value)
                if n:
                    group(value or None).counts[kind] = n
    elif buckets is not None:
        for (key, kind), n in _slot_counts(conn, q, buckets.key).items():
            g = group(key)
            if kind == "first_resolution":
                g.resolved_first = n
            elif kind == "first_contact":
                g.first_contact = n
            else:
                g.counts[kind] = n

    # --- timed figures ------------------------------------------------------------------------
    # The key in SQL (a column, or the local day/hour number), decoded per group afterwards:
    # the loops below touch each row once, with no call per row.
    key_sql, decode = _key_sql(by, q)
    samples: dict[str, dict[Key, list[float]]] = {}
    picks = (
        ("first_response", ("at - start",), ("start",)),
        ("next_response", ("at - start",), ("start",)),
        # One row, three figures: resolution, handling (when assigned), waiting for an agent.
        ("resolved", ("at - start", "at - start2", "value"), ("start", "start2")),
    )
    names = {"resolved": ("resolution", "handling", "awaiting")}
    for kind, values_sql, starts in picks:
        figures = names.get(kind, (kind,))
        raw: list[dict[Any, list[float]]] = [{} for _ in figures]
        if duration is None:
            sql = (
                f"SELECT {key_sql}, {', '.join(values_sql)} FROM kpi_facts WHERE kind = ?"
                f" AND at >= ? AND at < ?{cf}"
            )
            for row in conn.execute(sql, (kind, *span, *cargs)):
                k = row[0]
                for i, v in enumerate(row[1:]):
                    if v is not None:
                        found_list = raw[i].get(k)
                        if found_list is None:
                            found_list = raw[i][k] = []
                        found_list.append(v)
        else:
            sql = (
                f"SELECT {key_sql}, {', '.join(starts)}, at{', value' if kind == 'resolved' else ''}"
                f" FROM kpi_facts WHERE kind = ? AND at >= ? AND at < ?{cf}"
            )
            for row in conn.execute(sql, (kind, *span, *cargs)):
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
        found = summarize(sorted(v for values in by_key.values() for v in values), presorted=True)
        if found is not None:
            totals.timed[kind] = found

    # --- first-contact resolution (per channel, queue, agent; else counted in slots above) ----
    fcr_rows = (
        []
        if not q.channel and by in (None, "day", "hour")
        else conn.execute(
            f"SELECT {key_sql}, COUNT(*), SUM(value) FROM kpi_facts WHERE kind = 'first_resolution'"
            f" AND at >= ? AND at < ?{cf} GROUP BY 1",
            (*span, *cargs),
        ).fetchall()
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

    def survey_key(row: tuple[Any, ...], at_index: int) -> Key:
        if buckets is not None:
            return buckets.key(row[at_index])
        return None if column is None else _key(row[column])

    totals.surveys = _surveys(conn, q.start, q.end, lambda row, i: None, q.channel).get(None)
    if by is not None:
        for key, tally in _surveys(conn, q.start, q.end, survey_key, q.channel).items():
            group(key).surveys = tally

    # --- backlog (now) ------------------------------------------------------------------------
    n, waiting, oldest = conn.execute(
        "SELECT COUNT(*), COUNT(wait_started_at), MIN(wait_started_at) FROM kpi_conversations"
        f" WHERE active = 1{cf}",
        cargs,
    ).fetchone()
    totals.backlog = Backlog(int(n), int(waiting), oldest)
    if by in DIMS:
        for k, n, waiting, oldest in conn.execute(
            f"SELECT {by}, COUNT(*), COUNT(wait_started_at), MIN(wait_started_at)"
            f" FROM kpi_conversations WHERE active = 1{cf} GROUP BY 1",
            cargs,
        ):
            group(_key(k)).backlog = Backlog(int(n), int(waiting), oldest)
    return totals, (groups if by is not None else None)


def _slot_counts(
    conn: sqlite3.Connection, q: StatsQuery, key_of: Callable[[float], Key]
) -> dict[tuple[Key, str], int]:
    """Counts of the slotted kinds by (key_of(instant), kind): whole 15-minute slots from
    `kpi_slots`, the period's ragged ends from the facts."""
    out: dict[tuple[Key, str], int] = {}
    lo, hi = math.ceil(q.start / SLOT), math.floor(q.end / SLOT)
    edges = [(q.start, q.end)]
    if lo < hi:
        for kind, slot, n in conn.execute(
            "SELECT kind, slot, n FROM kpi_slots WHERE slot >= ? AND slot < ?", (lo, hi)
        ):
            k = (key_of(slot * SLOT), kind)
            out[k] = out.get(k, 0) + int(n)
        edges = [(q.start, lo * SLOT), (hi * SLOT, q.end)]
    for a, b in edges:
        if b <= a:
            continue
        for kind, at, value in conn.execute(
            "SELECT kind, at, value FROM kpi_facts WHERE at >= ? AND at < ? AND kind IN"
            f" ({','.join(repr(k) for k in SLOTTED)})",
            (a, b),
        ):
            for name in (
                (kind, "first_contact") if kind == "first_resolution" and value else (kind,)
            ):
                k = (key_of(at), name)
                out[k] = out.get(k, 0) + 1
    return out


def _key_sql(by: str | None, q: StatsQuery) -> tuple[str, Callable[[Any], Key]]:
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
    sql = f"(CAST((at + {offset}) / {size} AS INTEGER) * 64 + {index})"

    def decode(raw: Any) -> Key:
        number, i = divmod(int(raw), 64)
        return bucket_label(by, number, parts[i].offset)

    return sql, decode


def _key(raw: Any) -> Key:
    return None if raw is None or raw == "" else str(raw)


def _surveys(
    conn: sqlite3.Connection,
    start: float,
    end: float,
    key_of: Callable[[tuple[Any, ...], int], Key],
    channel: str | None = None,
) -> dict[Key, SurveyTally]:
    """Survey tallies by `key_of(row, index of the time column)`; {} while there is no survey
    table. Scores count by when they were answered, the response rate by when sent."""
    if not _has_surveys(conn):
        return {}
    out: dict[Key, SurveyTally] = {}
    for row in conn.execute(
        "SELECT kind, score, channel, queue, agent_id, sent_at, answered_at FROM survey_responses"
        " WHERE (answered_at >= ? AND answered_at < ?) OR (sent_at >= ? AND sent_at < ?)",
        (start, end, start, end),
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
