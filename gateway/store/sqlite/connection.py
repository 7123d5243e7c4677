"""The SQLite connection of the store: WAL mode, migrations, one transaction per store
operation, and the append of events inside it. The connection lives on a thread of its
own (`SqliteExecutor`).

Each store operation is one synchronous function handed to the connection's thread as a
whole (`_tx`) inside `BEGIN IMMEDIATE … COMMIT`, so an operation costs one thread hop
instead of one per statement, and is atomic against every other operation — in this
process and in any other process using the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gateway.model import Event, NewEvent, dumps
from gateway.store.migrations import MIGRATIONS
from gateway.store.sqlite.executor import ExecutorClosed, SqliteExecutor

if TYPE_CHECKING:
    from gateway.store.base import IngestOutcome, IngestRequest, Preclassified

T = TypeVar("T")


class SqliteBase:
    """The connection and its plumbing, shared by every role's mixin: `_run(fn)` runs `fn`
    on the connection's thread, `_tx(fn)` runs it as one transaction, `_events(conn, now,
    new_events)` appends events inside it. Mixins (`gateway/store/sqlite/*.py` and
    `gateway/store/sqlite/<feature>.py`) build on these three."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous is NORMAL or FULL")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self._executor: SqliteExecutor | None = None
        # Ingests waiting for the next group commit (gateway/store/sqlite/conversations.py).
        self._pending: list[tuple[IngestRequest, Preclassified, asyncio.Future[IngestOutcome]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batch_limit = 128

    # --- plumbing --------------------------------------------------------------------------
    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        executor = SqliteExecutor(f"sqlite:{Path(self.path).name}")
        await executor.start(self._connect)
        self._executor = executor
        await self._run(self._migrate)

    def _connect(self) -> sqlite3.Connection:
        """Open the connection (on the executor's thread, which alone uses it)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            # Statement journals (and the savepoints of a group commit) stay in memory: on
            # disk each message's savepoint wrote ~89 KB to a temp file (bench/temp_writes.py).
            conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await executor.stop()

    async def ping(self) -> bool:
        try:
            await self._run(lambda c: c.execute("SELECT 1").fetchone())
        except Exception:
            return False
        return True

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection's thread (no transaction): one hop for the whole
        function, however many statements it runs."""
        executor = self._executor
        if executor is None:
            raise ExecutorClosed("store is not open")
        return await executor.run(fn)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` atomically: BEGIN IMMEDIATE, commit on return, roll back on error."""

        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails (disk full, I/O error): never leave the
                # connection inside a transaction, or every later write would fail too.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        # The executor runs one function at a time, in order: no other operation of this
        # store can come between BEGIN and COMMIT, and other processes wait on the lock.
        return await self._run(wrapped)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for target, script in MIGRATIONS:
            if target <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _events(conn: sqlite3.Connection, now: float, new: list[NewEvent]) -> list[Event]:
        if not new:
            return []
        encoded = [dumps(ev.data) for ev in new]
        conn.executemany(
            "INSERT INTO events(type, at, data) VALUES (?,?,?)",
            [(ev.type, now, data) for ev, data in zip(new, encoded, strict=True)],
        )
        # One writer inside one transaction: the ids just assigned are consecutive.
        last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - len(new) + 1
        return [
            Event(first + i, ev.type, now, ev.data, data)
            for i, (ev, data) in enumerate(zip(new, encoded, strict=True))
        ]
