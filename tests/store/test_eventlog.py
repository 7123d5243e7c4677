"""The ordering rule of the event log, with two writers on one SQLite file or one
PostgreSQL database, and retention.

A reader (every consumer: streams, webhooks) reads the log from its cursor with
`LogReader`. It must never skip an event, never take one twice, and keep id order, even
when a second writer commits late with a lower id (docs/eventlog.md)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.eventlog import CursorExpired, LogReader
from gateway.model import NewEvent
from gateway.store import SqliteStore, Store
from gateway.store.postgres import PostgresStore
from gateway.store.postgres.eventlog import append_events
from tests.pg import PgServer

NOW = 1_000_000.0


@pytest.fixture
async def writers(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two store objects on one database file: two writers, as two processes would be."""
    one, two = SqliteStore(tmp_path / "log.db"), SqliteStore(tmp_path / "log.db")
    await one.open()
    await two.open()
    await one.sync_agents([("alice", "online", {"default": 2}), ("bob", "online", {})])
    await one.set_presence("bob", "online", NOW)  # the log is not empty
    yield one, two
    await one.close()
    await two.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def any_writers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one database, of each backend."""
    pair: tuple[Store, Store]
    if request.param == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        dsn = await server.new_database()
        pair = (PostgresStore(dsn, pool_size=4), PostgresStore(dsn, pool_size=4))
    else:
        pair = (SqliteStore(tmp_path / "log.db"), SqliteStore(tmp_path / "log.db"))
    one, two = pair
    await one.open()
    await two.open()
    await one.sync_agents([("alice", "online", {"default": 2}), ("bob", "online", {})])
    await one.set_presence("bob", "online", NOW)  # the log is not empty
    yield one, two
    await one.close()
    await two.close()


async def drain(reader: LogReader) -> list[int]:
    return [e.id for e in await reader.read()]


async def test_a_writer_still_in_its_transaction_cannot_commit_a_lower_id_later(
    writers: tuple[SqliteStore, SqliteStore],
) -> None:
    """Writer one appends an event and stalls before committing; writer two commits while
    it stalls. Ids are taken under SQLite's write lock, so the stalled commit cannot end up
    with an id lower than one a reader has already passed: the reader, polling all along,
    sees both events once, in commit order."""
    one, two = writers
    watcher = SqliteStore(one.path)  # the reader has a connection of its own
    await watcher.open()
    reader = LogReader(watcher, await watcher.last_event_id())
    appended, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        one._events(conn, NOW, [NewEvent("test.slow", {"writer": 1})])
        appended.set()
        release.wait(10)  # still inside the transaction (on the store's own thread)

    slow_commit = asyncio.create_task(one._tx(slow))
    await asyncio.to_thread(appended.wait, 10)
    fast_commit = asyncio.create_task(two.set_presence("bob", "away", NOW))
    seen: list[int] = []
    for _ in range(5):  # the reader polls while writer one is mid-transaction
        seen += await drain(reader)
        await asyncio.sleep(0.02)
    assert seen == []  # nothing of an uncommitted transaction, nothing out of order
    release.set()
    await slow_commit
    [fast] = await fast_commit
    seen += await drain(reader)
    types = [e.type for e in await two.events_since(0, 100)]
    assert types[-2:] == ["test.slow", "agent.presence"]
    assert seen == [fast.id - 1, fast.id]  # each once, in commit order
    await watcher.close()


async def test_a_late_commit_with_a_lower_id_is_neither_skipped_nor_repeated(
    writers: tuple[SqliteStore, SqliteStore], tmp_path: Path
) -> None:
    """A writer that draws its id before it commits (as a PostgreSQL sequence does) commits
    *after* another writer's higher id. The reader holds the higher one back until the hole
    closes, then delivers both in id order, once."""
    one, two = writers
    reader = LogReader(two, await two.last_event_id(), gap_wait=60.0)
    late = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    try:
        # The late writer draws the next id now (a sequence's nextval: not rolled back).
        late.execute("BEGIN IMMEDIATE")
        drawn = (
            int(late.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()[0])
            + 1
        )
        late.execute("UPDATE sqlite_sequence SET seq=? WHERE name='events'", (drawn,))
        late.execute("COMMIT")
        [early] = await one.set_presence("alice", "away", NOW)  # commits first, higher id
        assert early.id == drawn + 1
        assert await drain(reader) == []  # held back behind the hole at `drawn`
        assert reader.holding
        late.execute(
            "INSERT INTO events(id, type, at, data) VALUES (?, 'test.late', ?, '{}')",
            (drawn, NOW),
        )  # ...and commits late, with the lower id
        assert await drain(reader) == [drawn, early.id]
        assert await drain(reader) == []  # nothing twice
        [after] = await one.set_presence("alice", "online", NOW)
        assert await drain(reader) == [after.id]
    finally:
        late.close()


async def test_a_hole_that_never_fills_is_passed_after_the_wait(
    writers: tuple[SqliteStore, SqliteStore], tmp_path: Path
) -> None:
    """An id drawn by a transaction that rolled back never commits: after `gap_wait` the
    reader passes the hole and goes on."""
    one, two = writers
    now = [0.0]
    reader = LogReader(two, await two.last_event_id(), gap_wait=2.0, clock=lambda: now[0])
    late = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
    try:
        late.execute("UPDATE sqlite_sequence SET seq=seq+1 WHERE name='events'")
    finally:
        late.close()
    [event] = await one.set_presence("alice", "away", NOW)
    assert await drain(reader) == []
    now[0] = 1.9
    assert await drain(reader) == []
    now[0] = 2.0
    assert await drain(reader) == [event.id]


async def test_retention_prunes_a_prefix_and_an_old_cursor_is_told(
    any_writers: tuple[Store, Store],
) -> None:
    one, two = any_writers
    ids = [(await one.set_presence("alice", "away", NOW + i))[0].id for i in range(10)]
    assert await one.events_pruned_through() == 0
    # By age: the events committed before NOW + 3 go (the first one, and three of these).
    assert await one.prune_events(NOW + 3, None) == 4
    # By count: keep the newest 4.
    assert await one.prune_events(0.0, 4) == 3
    assert [e.id for e in await two.events_since(0, 100)] == ids[6:]
    assert await two.events_pruned_through() == ids[5]
    # A reader at the watermark goes on; one below it is told where the log starts.
    assert await drain(LogReader(two, ids[5])) == ids[6:]
    with pytest.raises(CursorExpired) as info:
        await LogReader(two, ids[2]).read()
    assert info.value.oldest == ids[6]
    assert await one.prune_events(0.0, 4) == 0  # nothing more to do


async def test_two_writers_at_once_and_a_reader_following_sees_every_event_once(
    any_writers: tuple[Store, Store],
) -> None:
    """Two store objects write concurrently while a reader follows the log from its cursor
    (on a store object of its own): it takes every event exactly once, in id order, and
    (ids assigned in commit order) never meets a hole it has to wait for."""
    one, two = any_writers
    reader = LogReader(two, await two.last_event_id(), gap_wait=60.0)
    written: list[int] = []
    seen: list[int] = []
    done = asyncio.Event()

    async def write(store: Store, agent: str) -> None:
        for i in range(60):
            events = await store.set_presence(agent, ("away", "online")[i % 2], NOW + i)
            written.extend(e.id for e in events)

    async def follow() -> None:
        while not done.is_set():
            seen.extend(await drain(reader))
            assert not reader.holding
            await asyncio.sleep(0)
        seen.extend(await drain(reader))

    follower = asyncio.create_task(follow())
    await asyncio.gather(*(write(s, a) for s in (one, two) for a in ("alice", "bob")))
    done.set()
    await follower
    assert len(written) == 240
    assert seen == sorted(written)  # each once, in order
    assert seen == list(range(seen[0], seen[0] + 240))  # no hole


async def test_postgres_a_writer_still_in_its_transaction_holds_back_the_next_ids(
    pg_dsn: str,
) -> None:
    """PostgreSQL: writer one appends an event and stalls before committing; writer two's
    event waits for it (the counter row is locked until the commit), so writer two cannot
    commit a higher id first. The reader, polling all along, sees nothing of the stalled
    transaction, then both events once, in commit order."""
    one, two, watcher = (PostgresStore(pg_dsn, pool_size=2) for _ in range(3))
    for store in (one, two, watcher):
        await store.open()
    try:
        await one.sync_agents([("bob", "online", {})])
        reader = LogReader(watcher, await watcher.last_event_id())
        async with one.pool.acquire() as conn, conn.transaction():
            [slow] = await append_events(conn, NOW, [NewEvent("test.slow", {"writer": 1})])
            fast_commit = asyncio.create_task(two.set_presence("bob", "away", NOW))
            seen: list[int] = []
            for _ in range(5):  # the reader polls while writer one is mid-transaction
                seen += await drain(reader)
                await asyncio.sleep(0.02)
            assert seen == [] and not fast_commit.done()
        [fast] = await fast_commit
        seen += await drain(reader)
        assert seen == [slow.id, fast.id] and fast.id == slow.id + 1
        # A transaction that rolls back gives its id back: the log has no hole.
        with pytest.raises(RuntimeError):
            async with one.pool.acquire() as conn, conn.transaction():
                await append_events(conn, NOW, [NewEvent("test.undone", {})])
                raise RuntimeError("rolled back")
        [after] = await two.set_presence("bob", "online", NOW)
        assert after.id == fast.id + 1
        assert await drain(reader) == [after.id]
    finally:
        for store in (one, two, watcher):
            await store.close()
