"""The KPI rollups on PostgreSQL (migration 4) and the reads behind `/v1/stats`.

The same rollups as the SQLite store's (gateway/store/sqlite/stats.py, whose module doc
says what each table holds), from the same code: the fold's rules (`_Fold`) and the reads
(`read`, `surveys`: generators that yield their queries) are the SQLite module's; only the
I/O is here.

A fold takes the cursor's row (`kv stats/cursor`) with `FOR UPDATE` before it reads the log,
and advances it in the same transaction: two instances folding at once are serialised on
that row, and the second (at READ COMMITTED, reading the row as the first committed it)
starts after the first's last event and finds nothing left to do. It waits rather than
skipping: the fold that runs before a `/v1/stats` answer must include every event committed
before the request. What the fold needs of the conversations and messages it meets is read
ahead, one query per table and batch.

The CPU work between the queries runs in a worker thread (`asyncio.to_thread`), never on
the event loop: a read's unpacking and sorting of samples and its summaries, a fold's rules
over its batch of events, and the one-time backfills' counting of every fact (on SQLite
all of it runs on the store's own thread anyway).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Generator, Sequence
from typing import Any

from connectors.base import Identity
from gateway.kpis.figures import Duration, Group, Key, StatsQuery, TimedFact, Worktime
from gateway.kpis.samples import SAMPLE_COLS, Pending, sample_accumulate, sample_rows
from gateway.model import Event, NewEvent, loads
from gateway.store.base import StatsStore
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase
from gateway.store.sqlite.stats import (
    _KCOLS,
    CURSOR_KEY,
    CURSOR_NS,
    FACT_COLS,
    HIST_COLS,
    HIST_KEY,
    MESSAGE_COLS,
    SLA_SAVE,
    SLA_UNREAD,
    STAMP_COLS,
    SURVEY_COLS,
    TIMED_FACTS,
    VOID_FIRST_CONTACT,
    Dialect,
    Query,
    Rows,
    _Fold,
    hist_accumulate,
    hist_rows,
    read,
    surveys,
)
from gateway.store.sqlite.stats_samples import SAMPLES_KEY

log = logging.getLogger("switchboard.stats")

POSTGRES = Dialect(
    "SELECT 1 WHERE to_regclass('survey_responses') IS NOT NULL", "FLOOR({})::bigint"
)


@functools.lru_cache(maxsize=256)
def marks(sql: str) -> str:
    """SQLite's `?` marks as PostgreSQL's `$1, $2, ...` (the shared SQL has no other `?`)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


async def drive(conn: Conn, reads: Generator[Query, Rows, Any]) -> Any:
    """Run `reads` on `conn`: each query's rows are sent back. The generator's steps (what
    it computes from the rows, up to its next query) run in a worker thread."""

    def step(rows: list[Any] | None) -> tuple[bool, Any]:
        # (done, the next query or the answer): a StopIteration cannot cross a future.
        try:
            return False, next(reads) if rows is None else reads.send([tuple(r) for r in rows])
        except StopIteration as done:
            return True, done.value

    done, value = await asyncio.to_thread(step, None)
    while not done:
        rows = await conn.fetch(marks(value[0]), *value[1])
        done, value = await asyncio.to_thread(step, rows)
    return value


HIST_SAVE = (
    f"INSERT INTO kpi_hist({HIST_COLS}) SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::bigint[], $5::int[], $6::bigint[], $7::float8[], $8::float8[],"
    " $9::float8[]) ON CONFLICT (kind, dim, day, key, bin) DO UPDATE SET"
    " n = kpi_hist.n + excluded.n, total = kpi_hist.total + excluded.total,"
    " lo = LEAST(kpi_hist.lo, excluded.lo), hi = GREATEST(kpi_hist.hi, excluded.hi)"
)


async def save_hist(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await conn.execute(HIST_SAVE, *[list(column) for column in zip(*rows, strict=True)])


async def hist_backfill(conn: Conn) -> None:
    """Once, after migration 6: count the facts folded before it in the histograms."""
    done = await conn.fetchval(
        "SELECT 1 FROM kv WHERE namespace = $1 AND key = $2", CURSOR_NS, HIST_KEY
    )
    if done:
        return

    def count(facts: list[Any]) -> list[tuple[Any, ...]]:
        hist: dict[tuple[str, str, str, int], Any] = {}
        for r in facts:
            hist_accumulate(hist, tuple(r))
        return hist_rows(hist)

    await save_hist(conn, await asyncio.to_thread(count, await conn.fetch(TIMED_FACTS)))
    await conn.execute(
        "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, '1')", CURSOR_NS, HIST_KEY
    )


SAMPLES_SAVE = (
    f"INSERT INTO kpi_samples({SAMPLE_COLS}) SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::bigint[], $5::bytea[]) ON CONFLICT (kind, dim, span, key) DO UPDATE"
    " SET samples = kpi_samples.samples || excluded.samples"
)


async def save_samples(conn: Conn, rows: list[tuple[str, str, str, int, bytes]]) -> None:
    """Append the fold's packed samples (gateway/kpis/samples.py) to the stored arrays."""
    if rows:
        await conn.execute(SAMPLES_SAVE, *[list(column) for column in zip(*rows, strict=True)])


async def samples_backfill(conn: Conn) -> None:
    """Once, after migration 12: pack the samples of the facts folded before it."""
    done = await conn.fetchval(
        "SELECT 1 FROM kv WHERE namespace = $1 AND key = $2", CURSOR_NS, SAMPLES_KEY
    )
    if done:
        return

    def pack(facts: list[Any]) -> list[tuple[str, str, str, int, bytes]]:
        pending: Pending = {}
        for r in facts:
            sample_accumulate(pending, tuple(r))
        return sample_rows(pending)

    await save_samples(conn, await asyncio.to_thread(pack, await conn.fetch(TIMED_FACTS)))
    await conn.execute(
        "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, '1')", CURSOR_NS, SAMPLES_KEY
    )


def _conversation_of(data: dict[str, Any]) -> str | None:
    cid = data.get("conversation_id") or (data.get("conversation") or {}).get("id")
    return str(cid) if cid else None


class _PgFold(_Fold):
    """The fold's rules with what they read looked up ahead (`read_ahead`), and the
    corrections of earlier folds' facts made at `save`."""

    def __init__(self, worktime: Worktime | None = None, sla: bool = False) -> None:
        super().__init__(None, worktime, sla)
        self.sla_rows: dict[str, Sequence[Any]] = {}
        self.kpi_rows: dict[str, Sequence[Any]] = {}
        self.stamp_rows: dict[str, Sequence[Any]] = {}
        self.message_rows: dict[str, Sequence[Any]] = {}
        self.voided: list[tuple[float, str]] = []

    async def read_ahead(self, conn: Conn, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        cids = sorted({c for _, data in events if (c := _conversation_of(data))})
        mids = sorted(
            {
                str(data["message_id"])
                for kind, data in events
                if kind in ("message.received", "message.queued") and data.get("message_id")
            }
        )
        if cids:
            for r in await conn.fetch(
                f"SELECT {_KCOLS} FROM kpi_conversations WHERE conversation_id = ANY($1)", cids
            ):
                self.kpi_rows[r[0]] = tuple(r)
            for r in await conn.fetch(
                f"SELECT id, {STAMP_COLS} FROM conversations WHERE id = ANY($1)", cids
            ):
                self.stamp_rows[r[0]] = tuple(r)[1:]
            if self.sla:
                for r in await conn.fetch(
                    "SELECT conversation_id, targets, fired FROM sla"
                    " WHERE conversation_id = ANY($1)",
                    cids,
                ):
                    self.sla_rows[r[0]] = tuple(r)[1:]
                for r in await conn.fetch(
                    "SELECT conversation_id, target, since, outcome FROM kpi_sla"
                    " WHERE conversation_id = ANY($1)",
                    cids,
                ):
                    self.sla_done[(r[0], r[1], float(r[2]))] = str(r[3])
        if mids:
            for r in await conn.fetch(
                f"SELECT id, {MESSAGE_COLS} FROM messages WHERE id = ANY($1)", mids
            ):
                self.message_rows[r[0]] = tuple(r)[1:]

    def apply_all(self, events: Sequence[tuple[int, str, float, dict[str, Any]]]) -> None:
        """The rules over a batch (read ahead: no I/O), in a worker thread."""
        for event_id, kind, at, data in events:
            self.apply(event_id, kind, at, data)

    def stored(self, conversation_id: str) -> Sequence[Any] | None:
        return self.kpi_rows.get(conversation_id)

    def stamps(self, conversation_id: str) -> Sequence[Any] | None:
        return self.stamp_rows.get(conversation_id)

    def message(self, message_id: str) -> Sequence[Any] | None:
        return self.message_rows.get(message_id)

    def sla_row(self, conversation_id: str) -> Sequence[Any] | None:
        return self.sla_rows.get(conversation_id)

    def stored_outcome(self, conversation_id: str, target: str, since: float) -> str | None:
        return None  # every stored outcome of these conversations was read ahead

    def void_first_contact(self, at: float, conversation_id: str) -> bool:
        self.voided.append((at, conversation_id))
        return False  # its slot is taken back at `save`, if it was counted

    async def save_to(self, conn: Conn) -> None:
        for at, cid in self.voided:
            status = await conn.execute(marks(VOID_FIRST_CONTACT), at, cid)
            if status.rsplit(" ", 1)[-1] != "0":
                self.unslot_first_contact(at)
        cols = _KCOLS.split(", ")
        await conn.executemany(
            f"INSERT INTO kpi_conversations({_KCOLS})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, 15))})"
            " ON CONFLICT (conversation_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in cols[1:]),
            self.conv_rows(),
        )
        await conn.executemany(
            f"INSERT INTO kpi_facts({FACT_COLS})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, 12))}) ON CONFLICT DO NOTHING",
            self.facts,
        )
        await save_hist(conn, hist_rows(self.hist))
        await save_samples(conn, sample_rows(self.samples))
        if self.sla_new:
            await conn.executemany(marks(SLA_SAVE) + " ON CONFLICT DO NOTHING", self.sla_new)
        slots, keys = self.tallies()
        if slots:
            await conn.execute(
                "INSERT INTO kpi_slots(kind, slot, n)"
                " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
                " ON CONFLICT (kind, slot) DO UPDATE SET n = kpi_slots.n + excluded.n",
                [k for k, _ in slots],
                [number for _, number in slots],
                list(slots.values()),
            )
        days = self.agent_days()
        if days:
            await conn.execute(
                "INSERT INTO kpi_agent_days(day, kind, agent, n)"
                " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
                " ON CONFLICT (day, kind, agent) DO UPDATE SET n = kpi_agent_days.n + excluded.n",
                *[list(column) for column in zip(*days, strict=True)],
            )
        if keys:
            ordered = sorted(keys)
            await conn.execute(
                "INSERT INTO kpi_keys(dim, value) SELECT * FROM unnest($1::text[], $2::text[])"
                " ON CONFLICT DO NOTHING",
                [d for d, _ in ordered],
                [v for _, v in ordered],
            )


class PgStats(PgBase, StatsStore):
    # --- folding the event log ---------------------------------------------------------------
    async def stats_fold(
        self, limit: int = 2000, worktime: Worktime | None = None, sla: bool = False
    ) -> tuple[int, list[TimedFact]]:
        """Fold up to `limit` events after the cursor; (events folded, timed facts); see
        `SqliteStats.stats_fold`."""

        async def op(conn: Conn) -> tuple[int, list[TimedFact]]:
            # The cursor's row, made if missing, then held: a second fold waits here.
            await conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, '0')"
                " ON CONFLICT (namespace, key) DO NOTHING",
                CURSOR_NS,
                CURSOR_KEY,
            )
            cursor = int(
                await conn.fetchval(
                    "SELECT value FROM kv WHERE namespace = $1 AND key = $2 FOR UPDATE",
                    CURSOR_NS,
                    CURSOR_KEY,
                )
            )
            await hist_backfill(conn)
            await samples_backfill(conn)
            unread = await conn.fetchval(SLA_UNREAD) if sla else None
            upto = 2**62 if unread is None else int(unread) - 1
            rows = await conn.fetch(
                "SELECT id, type, at, data FROM events WHERE id > $1 AND id <= $3"
                " ORDER BY id LIMIT $2",
                cursor,
                limit,
                upto,
            )
            if not rows:
                return 0, []
            if rows[0][0] != cursor + 1 and cursor > 0:
                log.warning(
                    "stats fold skipped pruned events",
                    extra={"cursor": cursor, "next": rows[0][0]},
                )
            events = await asyncio.to_thread(
                lambda: [(int(r[0]), str(r[1]), float(r[2]), loads(r[3])) for r in rows]
            )
            fold = _PgFold(worktime, sla)
            await fold.read_ahead(conn, [(kind, data) for _, kind, _, data in events])
            await asyncio.to_thread(fold.apply_all, events)
            await fold.save_to(conn)
            await conn.execute(
                "UPDATE kv SET value = $3 WHERE namespace = $1 AND key = $2",
                CURSOR_NS,
                CURSOR_KEY,
                str(events[-1][0]),
            )
            return len(events), fold.timed

        return await self._tx(op)

    # --- reading -----------------------------------------------------------------------------
    async def stats_read(
        self, query: StatsQuery, duration: Duration | None = None
    ) -> tuple[Group, dict[Key, Group] | None]:
        """The raw figures of the period: the totals, and each group's when grouped.
        `duration(start, end)` replaces calendar seconds (e.g. business hours)."""

        async def op(conn: Conn) -> tuple[Group, dict[Key, Group] | None]:
            # One snapshot for all the reads of one answer: totals and groups agree.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                found: tuple[Group, dict[Key, Group] | None] = await drive(
                    conn, read(query, duration, POSTGRES)
                )
            return found

        return await self._read(op)

    async def survey_rows(self, start: float, end: float) -> list[tuple[Any, ...]]:
        """Survey responses sent in [start, end), oldest first; none before surveys exist."""

        async def op(conn: Conn) -> list[tuple[Any, ...]]:
            if await conn.fetchval(POSTGRES.has_surveys) is None:
                return []
            rows = await conn.fetch(
                f"SELECT {SURVEY_COLS} FROM survey_responses WHERE sent_at >= $1 AND sent_at < $2"
                " ORDER BY sent_at, id",
                start,
                end,
            )
            return [tuple(r) for r in rows]

        return await self._read(op)

    async def stats_gauges(self, now: float, survey_window: float) -> dict[str, Any]:
        """For Prometheus: backlog and waiting by queue, agents online, and the survey
        scores of the last `survey_window` seconds."""

        async def op(conn: Conn) -> dict[str, Any]:
            backlog = {
                str(r[0]): (int(r[1]), int(r[2]))
                for r in await conn.fetch(
                    "SELECT queue, COUNT(*), COUNT(wait_started_at) FROM kpi_conversations"
                    " WHERE active = 1 GROUP BY queue"
                )
            }
            online = int(
                await conn.fetchval("SELECT COUNT(*) FROM agents WHERE presence = 'online'")
            )
            tallies = await drive(
                conn, surveys(now - survey_window, now, lambda row, i: None, POSTGRES)
            )
            return {"backlog": backlog, "online": online, "surveys": tallies.get(None)}

        return await self._read(op)

    # --- abandonment -------------------------------------------------------------------------
    async def record_departure(
        self, identity: Identity, left_at: float, channel: str, now: float
    ) -> list[Event]:
        """A live-chat visitor left: their active conversation on `channel` is abandoned if
        no agent had replied by then (`conversation.abandoned`, once per conversation: the
        mark is inserted only where there is none, so of two instances one records it)."""

        async def op(conn: Conn) -> list[Event]:
            row = await conn.fetchrow(
                "SELECT c.id, c.first_response_at FROM identities i"
                " JOIN conversations c ON c.contact_id = i.contact_id"
                " WHERE i.kind = $1 AND i.address = $2 AND c.channel = $3"
                " AND c.status IN ('open', 'assigned', 'pending')"
                " ORDER BY c.created_at DESC LIMIT 1",
                identity.kind,
                identity.address,
                channel,
            )
            if row is None or (row[1] is not None and row[1] <= left_at):
                return []
            marked = await conn.fetchval(
                "INSERT INTO kv(namespace, key, value) VALUES ('stats/abandoned', $1, $2)"
                " ON CONFLICT (namespace, key) DO NOTHING RETURNING TRUE",
                row[0],
                str(left_at),
            )
            if not marked:
                return []
            return await append_events(
                conn,
                now,
                [
                    NewEvent(
                        "conversation.abandoned",
                        {"conversation_id": row[0], "channel": channel, "left_at": left_at},
                    )
                ],
            )

        return await self._tx(op)
