"""The invariants the store relies on are constraints of the schema (migration 11): a
second writer that bypasses the store's code — here a raw second connection writing the
tables directly — is refused by the database itself."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.base import Identity, InboundMessage
from gateway.store import Conflict, SqliteStore
from gateway.store.base import Claim, Classification, IngestOutcome, IngestRequest
from gateway.store.migrations import MIGRATIONS

WEEK = 7 * 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "c.db")
    await s.open()
    await s.sync_agents([("alice", "online", {"default": 2, "sms": 1}), ("bob", "online", {})])
    yield s
    await s.close()


@pytest.fixture
def raw(store: SqliteStore) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    yield conn
    conn.close()


async def ingest(store: SqliteStore, ext: str, sender: str, now: float = 1000.0) -> IngestOutcome:
    return await store.ingest(
        IngestRequest(
            "mail",
            "email",
            InboundMessage(ext, Identity("email", sender), "hello"),
            lambda attrs: Classification("general", 1),
            now,
            WEEK,
        )
    )


def copy_conversation(raw: sqlite3.Connection, conv_id: str, new_id: str, **set_: object) -> None:
    """Insert a copy of a conversation row under another id, with some columns changed."""
    cols = [r[1] for r in raw.execute("PRAGMA table_info(conversations)")]
    row = dict(
        zip(
            cols,
            raw.execute("SELECT * FROM conversations WHERE id=?", (conv_id,)).fetchone(),
            strict=True,
        )
    )
    row.update(id=new_id, thread_token=None, **set_)
    raw.execute(
        f"INSERT INTO conversations({','.join(row)}) VALUES ({','.join('?' * len(row))})",
        list(row.values()),
    )


async def test_a_second_active_conversation_for_a_contact_is_refused(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    first = await ingest(store, "1", "dana@example.com")
    assert first.conversation is not None
    with pytest.raises(
        sqlite3.IntegrityError, match=r"UNIQUE constraint failed: conversations\.contact_id"
    ):
        copy_conversation(raw, first.conversation.id, "cv_second")
    # A resolved one next to it is fine; making it active again is not.
    copy_conversation(raw, first.conversation.id, "cv_old", status="resolved", resolved_at=900.0)
    with pytest.raises(
        sqlite3.IntegrityError, match=r"UNIQUE constraint failed: conversations\.contact_id"
    ):
        raw.execute("UPDATE conversations SET status='open' WHERE id='cv_old'")
    # ... nor through the store: reopening it while the other is active is a conflict.
    with pytest.raises(Conflict, match="another active conversation"):
        await store.reopen("cv_old", "admin", 1100.0)
    # Once the active one is resolved, the old one can be reopened.
    await store.resolve(first.conversation.id, "admin", None, 1200.0)
    reopened, _ = await store.reopen("cv_old", "admin", 1300.0)
    assert reopened.status == "open"


async def test_a_second_message_with_the_same_external_id_is_refused(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    first = await ingest(store, "ext-1", "dana@example.com")
    assert first.message is not None
    cols = [r[1] for r in raw.execute("PRAGMA table_info(messages)")]
    row = dict(
        zip(
            cols,
            raw.execute("SELECT * FROM messages WHERE id=?", (first.message.id,)).fetchone(),
            strict=True,
        )
    )
    with pytest.raises(sqlite3.IntegrityError, match=r"messages\.channel, messages\.external_id"):
        raw.execute(
            f"INSERT INTO messages({','.join(row)}) VALUES ({','.join('?' * len(row))})",
            list((row | {"id": "msg_copy"}).values()),
        )
    # The same external id on another channel is another message.
    raw.execute(
        f"INSERT INTO messages({','.join(row)}) VALUES ({','.join('?' * len(row))})",
        list((row | {"id": "msg_other", "channel": "chat"}).values()),
    )


async def test_a_claim_over_the_agents_capacity_is_refused(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    ids = []
    for i in range(3):
        out = await ingest(store, str(i), f"c{i}@example.com", now=1000.0 + i)
        assert out.conversation is not None
        ids.append(out.conversation.id)
    claimed, _ = await store.claim(
        [Claim(c, "alice", "email", 2, "general", "rr", []) for c in ids[:2]], 2000.0
    )
    assert claimed == ids[:2]  # alice is full: 2 of 2
    claim_third = (
        "UPDATE conversations SET assignee='alice', status='assigned', claimed=1 WHERE id=?"
    )
    with pytest.raises(sqlite3.IntegrityError, match="capacity"):
        raw.execute(claim_third, (ids[2],))
    # An admin raises her capacity for email: the same write goes through.
    raw.execute("""UPDATE agents SET capacity='{"default": 2, "email": 3}' WHERE id='alice'""")
    raw.execute(claim_third, (ids[2],))
    # Bob has no capacity at all: the router can never give him one.
    fourth = await ingest(store, "4", "d@example.com", now=1004.0)
    assert fourth.conversation is not None
    with pytest.raises(sqlite3.IntegrityError, match="capacity"):
        raw.execute(
            "UPDATE conversations SET assignee='bob', status='assigned', claimed=1 WHERE id=?",
            (fourth.conversation.id,),
        )
    # An assignment by hand may be forced over capacity (not a claim).
    forced, _ = await store.assign(fourth.conversation.id, "bob", None, "admin", 3000.0)
    assert forced.assignee == "bob"


async def test_a_claim_checks_the_capacity_written_by_another_writer_meanwhile(
    store: SqliteStore, raw: sqlite3.Connection
) -> None:
    """The router planned with alice at 0/2; another writer lowers her capacity to 1
    before the claims commit: one conversation is hers, not two."""
    ids = []
    for i in range(2):
        out = await ingest(store, str(i), f"e{i}@example.com", now=1000.0 + i)
        assert out.conversation is not None
        ids.append(out.conversation.id)
    raw.execute("""UPDATE agents SET capacity='{"default": 1}' WHERE id='alice'""")
    claimed, events = await store.claim(
        [Claim(c, "alice", "email", 2, "general", "rr", []) for c in ids], 2000.0
    )
    assert claimed == ids[:1] and len(events) == 1


async def test_the_upgrade_keeps_conversations_that_broke_the_rule_before(
    tmp_path: Path,
) -> None:
    """A store written before version 11 may hold two active conversations of one contact
    (reopened by hand): the upgrade keeps both; the newer one is the contact's."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for target, script in MIGRATIONS:
        if target > 10:
            break
        for statement in script.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
    conn.executescript(
        """
        INSERT INTO contacts(id, name, attributes, created_at, updated_at)
            VALUES ('ct_dana', 'Dana', '{}', 1, 1);
        INSERT INTO identities(kind, address, contact_id, verified)
            VALUES ('email', 'dana@example.com', 'ct_dana', 1);
        INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel, status,
            queue, priority, created_at, updated_at, reply_kind, reply_address) VALUES
            ('cv_old', 'ct_dana', 'mail', 'email', 'mail', 'open', 'general', 1, 1, 2,
             'email', 'dana@example.com'),
            ('cv_new', 'ct_dana', 'mail', 'email', 'mail', 'assigned', 'general', 1, 3, 4,
             'email', 'dana@example.com');
        """
    )
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.get_conversation("cv_old")).status == "open"
        out = await ingest(store, "late", "dana@example.com", now=10.0)
        assert out.conversation is not None and out.conversation.id == "cv_new"
    finally:
        await store.close()
