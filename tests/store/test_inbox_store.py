"""The agent workspace's store role (issue 14) on both backends: list filters, sorts and
keyset pages, counts, read markers, tags, priority, snooze and full-text search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.store import Conflict, SqliteStore, Store
from gateway.store.base import OutboundRequest, Scope
from gateway.store.inbox import (
    MARK_CLOSE,
    MARK_OPEN,
    ListQuery,
    SearchQuery,
    decode_cursor,
    encode_cursor,
    inbox_store,
    search_words,
)
from gateway.store.postgres import PostgresStore
from gateway.store.postgres.migrations import MIGRATIONS as PG_MIGRATIONS
from tests.pg import PgServer
from tests.store import test_contract as contract
from tests.store.test_contract import inbound, ingest
from tests.store.test_migrations import _schema_at

# The contract suite's fixtures: each test runs on SQLite and on PostgreSQL.
backend = contract.backend
store = contract.store

LONG = " ".join(f"filler{i}" for i in range(3000))


async def ids(s: Store, **kw: object) -> list[str]:
    q = ListQuery(reader="alice", now=kw.pop("now", 5000.0), **kw)  # type: ignore[arg-type]
    return [i.conversation.id for i in await inbox_store(s).ws_list(q)][: q.limit]


async def test_filters_sorts_and_keyset_pages(store: Store) -> None:
    ws = inbox_store(store)
    convs = []
    for n in range(5):
        out = await ingest(store, inbound(f"m{n}", f"c{n}@example.com"), now=1000.0 + n)
        convs.append(out.conversation.id)  # type: ignore[attr-defined]
    await store.assign(convs[1], "alice", None, "admin", 1100)
    await ws.ws_tags(convs[2], ["vip", "refund"], [], "admin", None, 1101)
    await ws.ws_priority(convs[3], 3, "admin", None, 1102)
    await store.resolve(convs[4], "admin", None, 1103)

    assert await ids(store) == convs[::-1]  # newest first
    assert await ids(store, sort="created_at") == convs
    assert (await ids(store, sort="-priority"))[0] == convs[3]
    assert await ids(store, tag="vip") == [convs[2]]
    assert await ids(store, assignee="alice") == [convs[1]]
    assert set(await ids(store, unassigned=True)) == set(convs) - {convs[1]}
    assert await ids(store, statuses=("resolved",)) == [convs[4]]
    assert set(await ids(store, statuses=("active",))) == set(convs[:4])
    assert set(await ids(store, waiting=True)) == set(convs[:4])
    # Keyset pages: stable when new conversations arrive between pages.
    first = await ws.ws_list(ListQuery("alice", 5000.0, sort="-created_at", limit=2))
    assert len(first) == 3  # limit + 1: there is another page
    last = first[1]
    cursor = encode_cursor("-created_at", last.sort_value, last.conversation.id)
    await ingest(store, inbound("new", "new@example.com"), now=2000.0)
    after = decode_cursor("-created_at", cursor)
    rest = await ws.ws_list(ListQuery("alice", 5000.0, sort="-created_at", after=after))
    assert [i.conversation.id for i in rest] == convs[2::-1]
    # A scope sees its queue and its own; the contact's name comes along.
    scoped = await ids(store, scope=Scope(agent="bob", queues=frozenset()))
    assert scoped == []
    [item] = await ws.ws_list(ListQuery("alice", 5000.0, tag="refund"))
    assert item.conversation.tags == ["vip", "refund"] and item.unread == 1 and item.waiting


async def test_unread_counts_and_markers(store: Store) -> None:
    ws = inbox_store(store)
    a = await ingest(store, inbound("1", "a@example.com"), now=1000.0)
    conv = a.conversation.id  # type: ignore[attr-defined]
    await ingest(store, inbound("2", "a@example.com"), now=1001.0)
    b = await ingest(store, inbound("3", "b@example.com"), now=1002.0)
    other = b.conversation.id  # type: ignore[attr-defined]
    await store.assign(conv, "alice", None, "admin", 1003)
    counts = await ws.ws_counts("alice", "alice", None)
    assert counts.views["mine"] == {"total": 1, "unread": 1}
    assert counts.views["unassigned"] == {"total": 1, "unread": 1}
    assert counts.views["all"] == {"total": 2, "unread": 2}
    assert counts.status["assigned"] == 1 and counts.status["open"] == 1
    items = await ws.ws_items([conv], "alice")
    assert items[conv].unread == 2
    first_msg = (await store.messages(conv))[0].id
    marker, events = await ws.ws_mark_read(conv, "alice", first_msg, None, 1004)
    assert marker.read_at == 1000.0 and [e.type for e in events] == ["conversation.read"]
    assert (await ws.ws_items([conv], "alice"))[conv].unread == 1
    marker, _ = await ws.ws_mark_read(conv, "alice", None, None, 1005)
    assert (await ws.ws_items([conv], "alice"))[conv].unread == 0
    # Never back; another reader has its own.
    marker, events = await ws.ws_mark_read(conv, "alice", first_msg, None, 1006)
    assert marker.read_at == 1001.0 and events == []
    assert (await ws.ws_items([conv], "bob"))[conv].unread == 2
    assert (await ws.ws_counts("alice", "alice", None)).views["mine"] == {"total": 1, "unread": 0}
    assert await ids(store, unread=True) == [other]
    await ingest(store, inbound("4", "a@example.com"), now=1010.0)
    assert set(await ids(store, unread=True)) == {conv, other}
    assert (await ws.ws_items([conv], "alice"))[conv].unread == 1


async def test_snooze_wakes_on_time_and_on_customer(store: Store) -> None:
    ws = inbox_store(store)
    a = await ingest(store, inbound("1", "a@example.com"), now=1000.0)
    conv = a.conversation.id  # type: ignore[attr-defined]
    b = await ingest(store, inbound("2", "b@example.com"), now=1000.0)
    other = b.conversation.id  # type: ignore[attr-defined]
    await store.assign(conv, "alice", None, "admin", 1001)
    with pytest.raises(Conflict):
        await ws.ws_snooze(conv, 900.0, "alice", None, 1002)
    snoozed, events = await ws.ws_snooze(conv, 2000.0, "alice", None, 1002)
    assert snoozed.status == "pending" and events[0].type == "conversation.snoozed"
    await ws.ws_snooze(other, 3000.0, "alice", None, 1002)
    assert set(await ids(store, statuses=("snoozed",))) == {conv, other}
    assert await ws.ws_snooze_next_due() == 2000.0
    assert await ws.ws_snooze_fire(1500.0) == []
    events = await ws.ws_snooze_fire(2000.0)
    assert [(e.type, e.data["reason"]) for e in events] == [("conversation.woken", "timer")]
    assert (await store.get_conversation(conv)).status == "assigned"
    assert await ws.ws_snooze_fire(2000.0) == []  # once
    # The customer writes before the snooze ends: it is back at once, the source settles it.
    await ingest(store, inbound("3", "b@example.com"), now=2500.0)
    assert (await store.get_conversation(other)).status == "open"
    assert await ws.ws_snooze_next_due() == float("-inf")
    events = await ws.ws_snooze_fire(2501.0)
    assert [(e.type, e.data["reason"]) for e in events] == [("conversation.woken", "customer")]
    assert await ws.ws_snooze_next_due() is None
    # By hand.
    await ws.ws_snooze(other, 9000.0, "admin", None, 2600)
    woken, _ = await ws.ws_wake(other, "admin", None, 2601)
    assert woken.status == "open"
    with pytest.raises(Conflict):
        await ws.ws_wake(other, "admin", None, 2602)


async def test_search_finds_a_word_in_the_middle_ranked_and_scoped(store: Store) -> None:
    ws = inbox_store(store)
    long_text = f"{LONG} the Überweisung for order 4711 {LONG}"
    a = await ingest(store, inbound("1", "anna@example.com", text=long_text), now=1000.0)
    conv = a.conversation.id  # type: ignore[attr-defined]
    b = await ingest(store, inbound("2", "zed@example.com", text="nothing here"), now=1001.0)
    await store.add_outbound(
        OutboundRequest(
            conv, "Your code is 555123", "system", None, 1002.0, metadata={"verification": True}
        )
    )
    hits = await ws.ws_search(SearchQuery(search_words("uberweis")))
    assert [(h.kind, h.conversation_id) for h in hits] == [("message", conv)]
    # Highlighted (PostgreSQL shows the accent-folded text when only it matched).
    assert f"berweisung{MARK_CLOSE}" in hits[0].snippet.lower()
    assert MARK_OPEN in hits[0].snippet and "4711" in hits[0].snippet
    assert len(hits[0].snippet) < 400
    # Several words, prefixes; a contact by its identity.
    assert len(await ws.ws_search(SearchQuery(search_words("order 471")))) == 1
    contact_hits = await ws.ws_search(SearchQuery(search_words("zed")))
    assert [(h.kind, h.conversation_id) for h in contact_hits] == [
        ("contact", b.conversation.id)  # type: ignore[attr-defined]
    ]
    # Never a verification code; nothing outside the scope.
    assert await ws.ws_search(SearchQuery(search_words("555123"))) == []
    hidden = Scope(agent="bob", queues=frozenset())
    assert await ws.ws_search(SearchQuery(search_words("order"), scope=hidden)) == []


OLD_ROWS = """
INSERT INTO contacts(id, name, attributes, created_at, updated_at)
    VALUES ('ct_old', 'Jürgen Öztürk', '{}', 1, 1);
INSERT INTO identities(kind, address, contact_id, verified)
    VALUES ('email', 'juergen@example.org', 'ct_old', TRUE);
INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel, status,
    queue, priority, created_at, updated_at, reply_kind, reply_address)
    VALUES ('cv_old', 'ct_old', 'mail', 'email', 'mail', 'open', 'general', 1, 100, 200,
            'email', 'juergen@example.org');
INSERT INTO messages(id, conversation_id, direction, channel, sender_type, sender_id, text,
    created_at, updated_at)
    VALUES ('msg_old1', 'cv_old', 'in', 'mail', 'contact', 'ct_old', '{long}', 100, 100),
           ('msg_old2', 'cv_old', 'in', 'mail', 'contact', 'ct_old', 'danke', 200, 200);
"""


async def check_backfilled(store: Store) -> None:
    ws = inbox_store(store)
    [item] = await ws.ws_list(ListQuery("alice", 5000.0, sort="-last_message_at"))
    assert item.last_message_at == 200.0 and item.unread == 2
    hits = await ws.ws_search(SearchQuery(["Kontonummer"]))
    assert [(h.kind, h.message_id) for h in hits] == [("message", "msg_old1")]
    contact = await ws.ws_search(SearchQuery(["ozturk"]))
    assert [(h.kind, h.conversation_id) for h in contact] == [("contact", "cv_old")]
    by_identity = await ws.ws_search(SearchQuery(search_words("juergen@example")))
    assert [h.kind for h in by_identity] == ["contact"]


async def test_sqlite_migration_17_backfills_rows_written_before(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = _schema_at(path, 15)
    conn.executescript(
        OLD_ROWS.replace("TRUE", "1").replace("{long}", f"{LONG} meine Kontonummer {LONG}")
    )
    conn.close()
    old = SqliteStore(path)
    await old.open()
    try:
        await check_backfilled(old)
    finally:
        await old.close()


async def test_postgres_migration_7_backfills_rows_written_before(
    pg_server: PgServer, tmp_path: Path
) -> None:
    dsn = pg_server.schema_dsn(tmp_path)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in PG_MIGRATIONS:
            if version < 7:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations(version) VALUES ($1)", version)
        await conn.execute(OLD_ROWS.replace("{long}", f"{LONG} meine Kontonummer {LONG}"))
    finally:
        await conn.close()
    old = PostgresStore(dsn)
    await old.open()
    try:
        await check_backfilled(old)
    finally:
        await old.close()


async def test_search_ranks_the_better_match_first_and_pages(store: Store) -> None:
    ws = inbox_store(store)
    weak = await ingest(store, inbound("1", "w@example.com", text=f"{LONG} parcel {LONG}"))
    strong = await ingest(
        store, inbound("2", "s@example.com", text="parcel lost, parcel late"), now=1001.0
    )
    hits = await ws.ws_search(SearchQuery(["parcel"]))
    assert [h.conversation_id for h in hits] == [
        strong.conversation.id,  # type: ignore[attr-defined]
        weak.conversation.id,  # type: ignore[attr-defined]
    ]
    assert hits[0].rank != hits[1].rank
    page = await ws.ws_search(SearchQuery(["parcel"], limit=1, offset=1))
    assert [h.conversation_id for h in page] == [weak.conversation.id]  # type: ignore[attr-defined]


async def set_sla_due(store: Store, conv_id: str, due: float) -> None:
    if isinstance(store, SqliteStore):

        def op(conn: Any) -> None:
            conn.execute("UPDATE conversations SET sla_due=? WHERE id=?", (due, conv_id))

        await store._tx(op)
    else:
        assert isinstance(store, PostgresStore)
        async with store.pool.acquire() as conn:
            await conn.execute("UPDATE conversations SET sla_due=$1 WHERE id=$2", due, conv_id)


async def test_sla_filter_and_sort(store: Store) -> None:
    convs = []
    for n in range(3):
        out = await ingest(store, inbound(f"s{n}", f"sla{n}@example.com"), now=1000.0 + n)
        convs.append(out.conversation.id)  # type: ignore[attr-defined]
    await set_sla_due(store, convs[0], 4000.0)  # breached at 5000
    await set_sla_due(store, convs[1], 5600.0)  # due within the 900 s warning
    # convs[2]: no SLA (1e18): ok
    assert await ids(store, sla="breached") == [convs[0]]
    assert await ids(store, sla="warning") == [convs[1]]
    assert await ids(store, sla="ok") == [convs[2]]
    assert await ids(store, sort="sla_due") == convs
