"""SQLite-specific behaviour the contract suite cannot express."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from connectors.base import Identity, InboundMessage
from gateway.store import SqliteStore
from gateway.store.base import Classification, ConversationFilter, IngestRequest


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


async def test_classification_runs_before_the_transaction_on_the_loop(tmp_path: Path) -> None:
    """The router's rules do not run under the store's write lock: a new contact's
    conversation is classified on the loop's thread. Only a new conversation of an
    existing contact whose stored attributes differ is classified inside."""
    store = SqliteStore(tmp_path / "k.db")
    await store.open()
    threads: list[tuple[str, dict[str, str]]] = []

    def classify(attrs: dict[str, str]) -> Classification:
        threads.append((threading.current_thread().name, dict(attrs)))
        return Classification("vip" if attrs.get("plan") == "pro" else "general", 1)

    def request(ext: str, now: float, **attrs: str) -> IngestRequest:
        msg = InboundMessage(
            external_id=ext,
            sender=Identity("email", "a@example.com"),
            text="hi",
            contact_attributes=dict(attrs),
        )
        return IngestRequest("mail", "email", msg, classify, now, 3600.0)

    loop_thread = threading.current_thread().name
    first = await store.ingest(request("1", 1000.0, plan="pro"))
    assert first.created and first.conversation is not None
    assert first.conversation.queue == "vip"
    assert threads == [(loop_thread, {"plan": "pro"})]
    await store.resolve(first.conversation.id, "admin", None, 1001.0)
    # Long after the window: a new conversation for the known contact, whose stored
    # attributes (plan=pro) the message does not carry: classified inside, on them.
    threads.clear()
    later = await store.ingest(request("2", 9000.0))
    assert later.created and later.conversation is not None
    assert later.conversation.queue == "vip"
    [(before, seen_before), (inside, seen_inside)] = threads
    assert before == loop_thread and seen_before == {}  # the message's own attributes
    assert inside != loop_thread and seen_inside == {"plan": "pro"}  # the stored ones
    await store.close()


async def test_a_failing_classifier_fails_only_a_message_that_opens_a_conversation(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "f.db")
    await store.open()
    ok = await store.ingest(
        IngestRequest(
            "mail",
            "email",
            InboundMessage("1", Identity("email", "b@example.com"), "hi"),
            lambda attrs: Classification("general", 1),
            1000.0,
            3600.0,
        )
    )

    def broken(attrs: dict[str, str]) -> Classification:
        raise ValueError("rules exploded")

    joined = await store.ingest(
        IngestRequest(
            "mail",
            "email",
            InboundMessage("2", Identity("email", "b@example.com"), "more"),
            broken,
            1001.0,
            3600.0,
        )
    )
    assert ok.conversation is not None and joined.conversation is not None
    assert joined.conversation.id == ok.conversation.id and not joined.created
    with pytest.raises(ValueError, match="rules exploded"):
        await store.ingest(
            IngestRequest(
                "mail",
                "email",
                InboundMessage("3", Identity("email", "new@example.com"), "hi"),
                broken,
                1002.0,
                3600.0,
            )
        )
    await store.close()
