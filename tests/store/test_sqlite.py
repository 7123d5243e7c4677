"""SQLite-specific behaviour the contract suite cannot express."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.store import SqliteStore
from gateway.store.base import ConversationFilter


async def test_a_failed_commit_leaves_the_store_usable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()

    def bad(conn: sqlite3.Connection) -> None:
        # A constraint checked only at COMMIT stands in for a commit-time I/O error.
        conn.execute("PRAGMA defer_foreign_keys=ON")
        conn.execute(
            "INSERT INTO identities(kind, address, contact_id) VALUES ('email', 'x@y.z', 'ct_none')"
        )

    with pytest.raises(sqlite3.IntegrityError):
        await store._tx(bad)
    await store.kv_set("ns", "k", "v")  # the next write works: nothing is left half-open
    assert await store.kv_get("ns", "k") == "v"
    await store.close()


async def test_full_synchronous_is_applied(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "f.db", synchronous="full")
    await store.open()
    assert await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
    await store.close()


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("status", "conversations_list_status"),
        ("queue", "conversations_list_queue"),
        ("assignee", "conversations_list_assignee"),
        ("channel", "conversations_list_channel"),
        ("contact_id", "conversations_list_contact"),
    ],
)
@pytest.mark.parametrize("cursor", [None, "cv_0123456789"])
async def test_each_conversation_filter_reads_an_index_in_order(
    tmp_path: Path, field: str, index: str, cursor: str | None
) -> None:
    """`GET /v1/conversations?{field}=…` is a range read of its index, newest first: no
    scan of the table, no sort, on the first page and on a page after a cursor."""
    store = SqliteStore(tmp_path / "q.db")
    await store.open()
    await store.close()
    sql, args = SqliteStore.list_query(
        ConversationFilter(**{field: "x"}, cursor=cursor, limit=50)  # type: ignore[arg-type]
    )
    with sqlite3.connect(tmp_path / "q.db") as conn:
        plan = [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert len(plan) == 1, plan
    assert plan[0].startswith(f"SEARCH conversations USING INDEX {index} "), plan
    assert "TEMP B-TREE" not in " ".join(plan), plan


async def test_an_unfiltered_conversation_page_reads_the_primary_key_in_order(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "q.db")
    await store.open()
    await store.close()
    for cursor in (None, "cv_0123456789"):
        sql, args = SqliteStore.list_query(ConversationFilter(cursor=cursor, limit=50))
        with sqlite3.connect(tmp_path / "q.db") as conn:
            plan = " ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "USING INDEX sqlite_autoindex_conversations_1" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


async def test_an_operation_runs_on_the_store_thread_and_never_blocks_the_loop(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    started, release = threading.Event(), threading.Event()
    threads: list[str] = []

    def slow(conn: sqlite3.Connection) -> int:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return int(conn.execute("SELECT 41 + 1").fetchone()[0])

    op = asyncio.create_task(store._run(slow))
    ticks = 0
    await asyncio.to_thread(started.wait, 10)
    for _ in range(10):  # the loop goes on while the store's thread is busy
        await asyncio.sleep(0.005)
        ticks += 1
    assert not op.done() and ticks == 10
    release.set()
    assert await op == 42
    assert threads[0] != threading.current_thread().name
    await store.close()


async def test_a_caller_that_gives_up_leaves_the_store_usable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    release = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        release.wait(10)
        conn.execute("INSERT INTO kv(namespace, key, value) VALUES ('ns', 'slow', 'written')")

    op = asyncio.create_task(store._tx(slow))
    await asyncio.sleep(0.05)
    op.cancel()  # the caller stops waiting; the operation it started still completes
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await op
    assert await store.kv_get("ns", "slow") == "written"
    await store.close()


async def test_a_closed_store_refuses_work_and_closes_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError, match="store is not open"):
        await store.kv_get("ns", "k")
    assert not await store.ping()
    await store.open()  # and it opens again
    assert await store.ping()
    await store.close()


async def test_a_connection_that_cannot_open_is_reported(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()  # a directory is not a database
    store = SqliteStore(tmp_path / "dir.db")
    with pytest.raises(sqlite3.Error):
        await store.open()
