"""`switchboard migrate --from sqlite:PATH --to postgresql://...`: move an installation's
SQLite store into PostgreSQL.

Idempotent: every row goes in with `ON CONFLICT DO NOTHING` on its key, so a run that was
interrupted, or run twice, copies what is missing and changes nothing else. Stop the
gateway first (a SQLite store written during the copy may be copied halfway). Progress goes
to stderr, a bar per table; the last line per table says how many rows were new.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from gateway.store.postgres.store import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite.stats import _KCOLS as KPI_CONVERSATION_COLUMNS

BATCH = 1_000
Row = tuple[Any, ...]


@dataclass
class Table:
    name: str
    columns: Sequence[str]
    # The row as PostgreSQL takes it (SQLite's integers for booleans, and so on).
    convert: Callable[[Row], Row] = lambda row: row
    # Columns PostgreSQL has and SQLite has not, set by `convert` (appended, in order).
    extra: Sequence[str] = field(default_factory=tuple)
    conflict: str = "DO NOTHING"
    # A table WITHOUT ROWID is read in the order of its primary key (these columns).
    key: Sequence[str] = ()

    def insert_sql(self) -> str:
        cols = [*self.columns, *self.extra]
        marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        return f"INSERT INTO {self.name}({', '.join(cols)}) VALUES ({marks}) ON CONFLICT {self.conflict}"


def _bool_at(index: int) -> Callable[[Row], Row]:
    def convert(row: Row) -> Row:
        out = list(row)
        out[index] = bool(out[index])
        return tuple(out)

    return convert


def _no_merge(row: Row) -> Row:
    # Contacts go in without `merged_into` (it points at other contacts): set after all are in.
    return (*row[:3], None, *row[4:])


CONVERSATION_COLUMNS = (
    "id",
    "contact_id",
    "channel",
    "channel_kind",
    "last_channel",
    "status",
    "queue",
    "priority",
    "created_at",
    "updated_at",
    "assignee",
    "required_skills",
    "tags",
    "subject",
    "thread_token",
    "reply_kind",
    "reply_address",
    "routing",
    "assigned_at",
    "first_response_at",
    "resolved_at",
    "last_inbound_at",
)
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "direction",
    "channel",
    "sender_type",
    "sender_id",
    "text",
    "created_at",
    "updated_at",
    "html",
    "subject",
    "attachments",
    "external_id",
    "provider_message_id",
    "status",
    "reason",
    "automated",
    "metadata",
    "raw_blob",
)


class Copier:
    def __init__(self, source: Path, dsn: str, out: TextIO | None = None) -> None:
        self.source = source
        self.dsn = dsn
        # Looked up when the copy is made, not when this module was imported.
        self.out = out if out is not None else sys.stderr
        self.summary: dict[str, tuple[int, int]] = {}  # table → (rows read, rows new)

    # --- progress --------------------------------------------------------------------------
    def _bar(self, table: str, done: int, total: int, final: bool = False) -> None:
        width = 30
        filled = width if total == 0 else done * width // total
        line = f"{table:<15} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if self.out.isatty():
            self.out.write("\r" + line + ("\n" if final else ""))
        elif final:
            self.out.write(line + "\n")
        self.out.flush()

    # --- the copy ----------------------------------------------------------------------------
    async def run(self) -> dict[str, tuple[int, int]]:
        if not self.source.exists():
            raise FileNotFoundError(f"no SQLite store at {self.source}")
        # Both schemas current first: the SQLite file as this version writes it, PostgreSQL
        # migrated (its own migrations, under their lock).
        for store in (SqliteStore(self.source), PostgresStore(self.dsn, pool_size=1)):
            await store.open()
            await store.close()
        src = sqlite3.connect(f"file:{self.source}?mode=ro", uri=True, check_same_thread=False)
        dst = await asyncpg.connect(self.dsn)
        try:
            await self._copy_all(src, dst)
        finally:
            await dst.close()
            src.close()
        return self.summary

    def _tables(self) -> list[Table]:
        return [
            Table(
                "contacts",
                (
                    "id",
                    "name",
                    "attributes",
                    "merged_into",
                    "created_at",
                    "updated_at",
                    "portal_epoch",
                ),
                _no_merge,
            ),
            Table("identities", ("kind", "address", "contact_id", "verified"), _bool_at(3)),
            Table("claims", ("contact_id", "kind", "address", "channel", "created_at")),
            Table(
                "merges",
                (
                    "id",
                    "source",
                    "target",
                    "identity_kind",
                    "identity_address",
                    "conversations",
                    "at",
                    "undone_at",
                    "by_whom",
                ),
            ),
            # `opened_for` and `claimed` as SQLite's migration 11 set them: the same rules.
            Table(
                "conversations",
                (*CONVERSATION_COLUMNS, "opened_for", "claimed", "sla_due"),
                _bool_at(23),
            ),
            Table("messages", MESSAGE_COLUMNS, _bool_at(16)),
            # The agent workspace (issue 14): internal notes and canned replies.
            Table(
                "notes",
                (
                    "id",
                    "conversation_id",
                    "sender_type",
                    "sender_id",
                    "text",
                    "mentions",
                    "attachments",
                    "created_at",
                ),
            ),
            Table(
                "canned_replies",
                (
                    "id",
                    "shortcut",
                    "title",
                    "texts",
                    "scope",
                    "queues",
                    "agent",
                    "owner",
                    "created_at",
                    "updated_at",
                ),
            ),
            Table("edits", ("channel", "external_id", "message_id", "at")),
            Table("blobs", ("id", "content_type", "size", "data")),
            # An SQLite lease belongs to a process that is gone: the items are due at once.
            Table(
                "outbox",
                (
                    "message_id",
                    "channel",
                    "attempts",
                    "next_attempt_at",
                    "last_error",
                    "to_kind",
                    "to_address",
                ),
            ),
            Table("early_receipts", ("channel", "provider_message_id", "status", "reason", "at")),
            Table("agents", ("id", "presence", "capacity", "last_assigned_at")),
            Table(
                "agent_load",
                ("agent_id", "channel_kind", "n"),
                conflict="(agent_id, channel_kind) DO UPDATE SET n = excluded.n",
            ),
            Table(
                "queue_cursors",
                ("queue", "agent_id"),
            ),
            # Escalation's stamps (issue 12): waits and their steps, pending offers (the
            # units of capacity agent_load counts for them), declines, last replies.
            Table("waits", ("conversation_id", "reason", "since", "step", "state", "due")),
            Table(
                "offers",
                (
                    "id",
                    "conversation_id",
                    "agent_id",
                    "channel_kind",
                    "queue",
                    "strategy",
                    "reasons",
                    "status",
                    "created_at",
                    "expires_at",
                    "answered_at",
                ),
            ),
            Table("declines", ("conversation_id", "agent_id", "reason", "at")),
            Table("agent_replies", ("conversation_id", "agent_id", "at")),
            Table("presence_stamps", ("agent_id", "presence", "since")),
            Table("events", ("id", "type", "at", "data")),
            # The SLA clocks go on where SQLite stopped: what fired stays fired, and the
            # log is read on from SQLite's cursor (never back: a rerun after the gateway
            # moved on keeps the cursor it reached).
            Table(
                "sla", ("conversation_id", "policy", "targets", "fired", "next_at", "updated_at")
            ),
            Table(
                "sla_cursor",
                ("id", "event_id"),
                conflict="(id) DO UPDATE SET event_id ="
                " GREATEST(sla_cursor.event_id, excluded.event_id)",
            ),
            Table("notices", ("conversation_id", "kind", "at")),
            Table("kv", ("namespace", "key", "value")),
            # The KPI rollups (they outlive the events), with the fold's cursor in `kv`.
            Table("kpi_conversations", tuple(KPI_CONVERSATION_COLUMNS.split(", "))),
            Table(
                "kpi_facts",
                (
                    "kind",
                    "at",
                    "seq",
                    "start",
                    "start2",
                    "value",
                    "conversation_id",
                    "channel",
                    "queue",
                    "agent",
                    "business",
                ),
                key=("kind", "at", "seq"),
            ),
            Table(
                "kpi_sla",
                ("conversation_id", "target", "since", "outcome"),
                key=("conversation_id", "target", "since"),
            ),
            Table(
                "kpi_hist",
                ("kind", "dim", "key", "day", "bin", "n", "total", "lo", "hi"),
                key=("kind", "dim", "day", "key", "bin"),
            ),
            Table("kpi_samples", ("kind", "dim", "key", "span", "samples")),
            Table("kpi_agent_days", ("day", "kind", "agent", "n"), key=("day", "kind", "agent")),
            Table("kpi_slots", ("kind", "slot", "n"), key=("kind", "slot")),
            Table("kpi_keys", ("dim", "value"), key=("dim", "value")),
            Table("leases", ("name", "holder", "expires_at")),
            Table(
                "quarantine",
                (
                    "id",
                    "channel",
                    "content_type",
                    "data",
                    "external_id",
                    "reason",
                    "metadata",
                    "status",
                    "retries",
                    "message_id",
                    "created_at",
                    "updated_at",
                ),
            ),
            # Surveys, in their order (the list's `seq` follows SQLite's rowid).
            Table(
                "survey_responses",
                (
                    "id",
                    "conversation_id",
                    "contact_id",
                    "channel",
                    "kind",
                    "score",
                    "comment",
                    "agent_id",
                    "queue",
                    "sent_at",
                    "answered_at",
                    "language",
                    "message_id",
                    "resolved_at",
                    "answer_channel",
                    "answer_external_id",
                    "commented_at",
                ),
            ),
            Table(
                "survey_decisions",
                ("conversation_id", "resolved_at", "decided_at", "outcome", "response_id"),
            ),
            Table("survey_optouts", ("contact_id", "at", "via")),
            # The agent workspace (issue 14); its search indexes are built by PostgreSQL.
            Table(
                "read_markers",
                ("reader", "conversation_id", "read_at", "message_id"),
                key=("reader", "conversation_id"),
            ),
            Table("snoozes", ("conversation_id", "until", "at", "by")),
        ]

    async def _copy_all(self, src: sqlite3.Connection, dst: asyncpg.Connection) -> None:
        tables = self._tables()
        known = {t.name for t in tables}
        # Who holds which lease or bot turn is not state to move (a lease's fence is in
        # `kv`, copied).
        ignored = {"sqlite_sequence", "coord_leases", "bot_turns"}
        others = sorted(
            str(r[0])
            for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if r[0] not in known
            and r[0] not in ignored
            and not str(r[0]).startswith(("messages_fts", "contacts_fts"))
        )
        if others:
            self.out.write(f"not copied (not kept in PostgreSQL): {', '.join(others)}\n")
        for table in tables:
            await self._copy(src, dst, table)
        # Links between contacts, now that every contact is in.
        merged = await asyncio.to_thread(
            lambda: src.execute(
                "SELECT id, merged_into FROM contacts WHERE merged_into IS NOT NULL"
            ).fetchall()
        )
        if merged:
            await dst.executemany(
                "UPDATE contacts SET merged_into=$2 WHERE id=$1 AND merged_into IS NULL", merged
            )
        # The event counter continues after the last event copied.
        await dst.execute(
            "UPDATE event_head SET seq = GREATEST(seq, (SELECT COALESCE(MAX(id), 0) FROM events))"
        )

    async def _copy(self, src: sqlite3.Connection, dst: asyncpg.Connection, table: Table) -> None:
        total = int(src.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])
        before = int(await dst.fetchval(f"SELECT count(*) FROM {table.name}"))
        key = ", ".join(table.key or ("rowid",))
        width = len(table.key) or 1
        select = (
            f"SELECT {key}, {', '.join(table.columns)} FROM {table.name}"
            f" WHERE ({key}) > ({', '.join('?' * width)}) ORDER BY {key} LIMIT ?"
        )
        first = f"SELECT {key}, {', '.join(table.columns)} FROM {table.name} ORDER BY {key} LIMIT ?"
        insert = table.insert_sql()
        done, last = 0, None
        self._bar(table.name, 0, total)
        while True:
            rows = await asyncio.to_thread(
                _fetch, src, *((first, (BATCH,)) if last is None else (select, (*last, BATCH)))
            )
            if not rows:
                break
            last = tuple(rows[-1][:width])
            batch: Iterable[Row] = (table.convert(_storable(r[width:])) for r in rows)
            async with dst.transaction():
                await dst.executemany(insert, list(batch))
            done += len(rows)
            self._bar(table.name, done, total)
        after = int(await dst.fetchval(f"SELECT count(*) FROM {table.name}"))
        self._bar(table.name, done, total, final=True)
        self.out.write(f"{table.name}: {done} rows, {after - before} new\n")
        self.summary[table.name] = (done, after - before)


def _fetch(src: sqlite3.Connection, sql: str, args: Row) -> list[Row]:
    return src.execute(sql, args).fetchall()


def _storable(row: Row) -> Row:
    """The row without NUL (U+0000) in its texts: SQLite kept those an older version
    stored, PostgreSQL text cannot hold one (the ingest drops them now, as here)."""
    return tuple(v.replace("\x00", "") if isinstance(v, str) and "\x00" in v else v for v in row)


def migrate_from_sqlite(
    source: Path, dsn: str, out: TextIO | None = None
) -> dict[str, tuple[int, int]]:
    """Copy the SQLite store at `source` into the PostgreSQL database at `dsn`."""
    return asyncio.run(Copier(source, dsn, out).run())
