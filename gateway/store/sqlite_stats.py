"""The SQLite store's KPI rollups (migration 14) and the reads behind `/v1/stats`.

The event log is the source: `stats_fold` reads the events after its cursor (kept in
`kv stats/cursor`) and folds them, in the same transaction that advances the cursor, into
`kpi_conversations` (what the fold remembers per conversation between events) and
`kpi_facts` (one row per message, response, resolution, ... with the channel, queue and
agent it counts for). A fold is atomic and idempotent: two instances folding at once are
serialised by the write lock and the second finds nothing left to do. The facts outlive
the event log's retention.

`stats_read` aggregates the facts of a period grouped by a key, in SQL, on the store's
thread; only the samples of the timed figures (for median and p90) come back, sorted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import Identity
from gateway.model import Event, NewEvent, loads
from gateway.stats import (
    COUNTED,
    TIMED,
    Backlog,
    Duration,
    Group,
    Key,
    StatsQuery,
    Summary,
    SurveyTally,
    TimedFact,
    bucket_label,
    ranks,
    segments,
    summarize,
)
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
        value: float | None = None,
        channel: str | None = None,
        agent: str | None = None,
        agent_given: bool = False,
    ) -> None:
        self.seq += 1
        self.facts.append(
            (
                kind,
                at,
                self.seq,
                start,
                value,
                c.conversation_id,
                channel or c.channel,
                c.queue,
                agent if agent_given else c.agent,
            )
        )

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
            self.fact("resolution", at, c, start=c.cycle_started_at)
            self.timed.append(TimedFact("resolution", at - c.cycle_started_at, c.channel, c.queue))
            if c.assigned_at is not None:
                self.fact("handling", at, c, start=c.assigned_at)
            self.fact("awaiting", at, c, value=c.awaiting)
            if c.first_resolved_at is None:
                c.first_resolved_at = at
                self.fact("first_resolution", at, c, value=float(c.replies))
            c.active, c.awaiting = 0, 0.0
        elif kind == "conversation.reopened":
            c.reopens += 1
            self.fact("reopened", at, c)
            c.cycle_started_at, c.active, c.awaiting = at, 1, 0.0
            c.agent, c.assigned_at, c.wait_started_at = None, None, None
        elif kind == "conversation.abandoned":
            self.fact("abandoned", at, c)

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
            "INSERT OR IGNORE INTO kpi_facts(kind, at, seq, start, value, conversation_id,"
            " channel, queue, agent) VALUES (?,?,?,?,?,?,?,?,?)",
            self.facts,
        )


class _Keys:
    """The SQL expression of a group's key over a time column, and its label."""

    def __init__(self, q: StatsQuery, group_by: str | None) -> None:
        self.group_by = group_by
        self.segments = segments(q.start, q.end, q.zone) if group_by in ("day", "hour") else []

    def expr(self, column: str = "at", prefix: str = "", agent: str = "agent") -> str:
        """`column`: the time column; `prefix`: a table alias with its dot; `agent`: the
        agent column's name (`agent_id` in survey_responses)."""
        g = self.group_by
        if g is None:
            return "NULL"
        if g not in ("day", "hour"):
            return f"{prefix}{agent if g == 'agent' else g}"
        col = f"{prefix}{column}"
        # The zone's offset where `col` falls: numbers we computed, written into the SQL.
        offset = "".join(
            f"WHEN {col} < {seg.end!r} THEN {seg.offset} " for seg in self.segments[:-1]
        )
        last = self.segments[-1].offset
        local = f"({col} + CASE {offset}ELSE {last} END)" if offset else f"({col} + {last})"
        if g == "day":
            return f"CAST({local} / 86400 AS INTEGER)"
        # An hour also carries its segment: a repeated local hour (DST ends) stays two.
        index = "".join(
            f"WHEN {col} < {seg.end!r} THEN {i} " for i, seg in enumerate(self.segments[:-1])
        )
        seg = f"CASE {index}ELSE {len(self.segments) - 1} END" if index else "0"
        return f"(CAST({local} / 3600 AS INTEGER) * 64 + {seg})"

    def label(self, key: Any) -> Key:
        g = self.group_by
        if key is None or g is None:
            return None
        if g == "day":
            return bucket_label("day", int(key), 0)
        if g == "hour":
            number, index = divmod(int(key), 64)
            return bucket_label("hour", number, self.segments[index].offset)
        return None if key == "" else str(key)


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

    async def stats_behind(self) -> bool:
        """Whether events wait to be folded."""

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (CURSOR_NS, CURSOR_KEY)
            ).fetchone()
            cursor = int(row[0]) if row else 0
            return (
                conn.execute("SELECT 1 FROM events WHERE id > ? LIMIT 1", (cursor,)).fetchone()
                is not None
            )

        result: bool = await self._run(op)
        return result

    # --- reading -----------------------------------------------------------------------------
    async def stats_read(
        self, query: StatsQuery, duration: Duration | None = None
    ) -> tuple[Group, dict[Key, Group] | None]:
        """The raw figures of the period: the totals, and each group's when grouped.
        `duration(start, end)` replaces calendar seconds (e.g. business hours)."""

        def op(conn: sqlite3.Connection) -> tuple[Group, dict[Key, Group] | None]:
            totals = _read(conn, query, None, duration)[None]
            groups = None
            if query.group_by is not None:
                groups = _read(conn, query, query.group_by, duration)
            return totals, groups

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
            surveys = _surveys(conn, now - survey_window, now, None).get(None)
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


def _timed_sql(key: str, kind: str) -> str:
    """Per group: the count, the sum and the samples at the ranks of `ranks()`, sorted in
    SQLite (C) rather than fetched."""
    return (
        f"SELECT k, n, total, rn, v FROM (SELECT k, v,"
        " ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn,"
        " COUNT(*) OVER (PARTITION BY k) AS n, SUM(v) OVER (PARTITION BY k) AS total"
        f" FROM (SELECT {key} AS k, COALESCE(value, at - start) AS v FROM kpi_facts"
        f" WHERE kind = '{kind}' AND at >= :start AND at < :end))"
        " WHERE rn = (n + 1) / 2 OR rn = n / 2 + 1 OR rn = (9 * n + 9) / 10"
    )


def _read(
    conn: sqlite3.Connection, q: StatsQuery, group_by: str | None, duration: Duration | None
) -> dict[Key, Group]:
    keys = _Keys(q, group_by)
    groups: dict[Key, Group] = {}

    def group(raw: Any) -> Group:
        label = keys.label(raw)
        g = groups.get(label)
        if g is None:
            g = groups[label] = Group()
        return g

    args = {"start": q.start, "end": q.end}
    key = keys.expr()
    if group_by is None:
        g = group(None)
        for kind in COUNTED:  # a count of a primary-key range: no row is read
            n = conn.execute(
                "SELECT COUNT(*) FROM kpi_facts WHERE kind = ? AND at >= ? AND at < ?",
                (kind, q.start, q.end),
            ).fetchone()[0]
            g.counts[kind] = int(n)
    else:
        marks = ",".join(f"'{k}'" for k in COUNTED)
        for k, kind, n in conn.execute(
            f"SELECT {key}, kind, COUNT(*) FROM kpi_facts WHERE kind IN ({marks})"
            " AND at >= :start AND at < :end GROUP BY 1, 2",
            args,
        ):
            group(k).counts[kind] = int(n)
    for kind in TIMED:
        if duration is None or kind == "awaiting":
            picks: dict[Any, tuple[int, float, dict[int, float]]] = {}
            for k, n, total, rn, v in conn.execute(_timed_sql(key, kind), args):
                picks.setdefault(k, (int(n), float(total), {}))[2][int(rn)] = float(v)
            for k, (n, total, at_rank) in picks.items():
                a, b, p = ranks(n)
                group(k).timed[kind] = Summary(
                    n, (at_rank[a] + at_rank[b]) / 2, at_rank[p], total / n
                )
        else:
            samples: dict[Any, list[float]] = {}
            for k, a, b in conn.execute(
                f"SELECT {key}, start, at FROM kpi_facts"
                " WHERE kind = :kind AND at >= :start AND at < :end",
                {**args, "kind": kind},
            ):
                samples.setdefault(k, []).append(duration(a, b))
            for k, values in samples.items():
                found = summarize(values)
                if found is not None:
                    group(k).timed[kind] = found
    fkey = keys.expr(prefix="f.")
    for k, resolved, first in conn.execute(
        f"SELECT {fkey}, COUNT(*), SUM(f.value <= 1 AND k.reopens = 0) FROM kpi_facts f"
        " JOIN kpi_conversations k ON k.conversation_id = f.conversation_id"
        " WHERE f.kind = 'first_resolution' AND f.at >= :start AND f.at < :end GROUP BY 1",
        args,
    ):
        g = group(k)
        g.resolved_first += int(resolved)
        g.first_contact += int(first or 0)
    for k, tally in _surveys(conn, q.start, q.end, keys).items():
        group(k).surveys = tally
    if group_by not in ("day", "hour"):
        for k, n, waiting, oldest in conn.execute(
            f"SELECT {key}, COUNT(*), COUNT(wait_started_at), MIN(wait_started_at)"
            " FROM kpi_conversations WHERE active = 1 GROUP BY 1"
        ):
            group(k).backlog = Backlog(int(n), int(waiting), oldest)
        if group_by is None and group(None).backlog is None:
            group(None).backlog = Backlog()
    return groups


def _surveys(
    conn: sqlite3.Connection, start: float, end: float, keys: _Keys | None
) -> dict[Any, SurveyTally]:
    """Survey tallies by raw key (None: ungrouped); {} while there is no survey table."""
    if not _has_surveys(conn):
        return {}
    out: dict[Any, SurveyTally] = {}
    args = {"start": start, "end": end}
    key = "NULL" if keys is None else keys.expr("answered_at", agent="agent_id")
    for k, kind, n, satisfied, promoters, detractors, total in conn.execute(
        f"SELECT {key}, kind, COUNT(*), SUM(score >= 4), SUM(score >= 9), SUM(score <= 6),"
        " SUM(score) FROM survey_responses WHERE score IS NOT NULL AND answered_at >= :start"
        " AND answered_at < :end GROUP BY 1, 2",
        args,
    ):
        t = out.setdefault(k, SurveyTally())
        if kind == "csat":
            t.csat_answers += int(n)
            t.csat_satisfied += int(satisfied or 0)
        elif kind == "nps":
            t.nps_answers += int(n)
            t.nps_promoters += int(promoters or 0)
            t.nps_detractors += int(detractors or 0)
        elif kind == "ces":
            t.ces_answers += int(n)
            t.ces_sum += float(total or 0)
    key = "NULL" if keys is None else keys.expr("sent_at", agent="agent_id")
    for k, sent, answered in conn.execute(
        f"SELECT {key}, COUNT(*), COUNT(answered_at) FROM survey_responses"
        " WHERE sent_at >= :start AND sent_at < :end GROUP BY 1",
        args,
    ):
        t = out.setdefault(k, SurveyTally())
        t.sent += int(sent)
        t.answered += int(answered)
    return out
