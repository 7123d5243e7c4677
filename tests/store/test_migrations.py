"""Upgrading a store written by an earlier version keeps its data and repairs what it must."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from connectors.base import Identity
from gateway.store import SqliteStore
from gateway.store.base import OutboundRequest
from gateway.store.migrations import MIGRATIONS


def _schema_at(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for target, script in MIGRATIONS:
        if target > version:
            break
        for statement in script.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
    return conn


async def test_a_takeover_recorded_before_claims_existed_is_undone(tmp_path: Path) -> None:
    """Before version 7, a chat visitor who typed Dana's email was linked to Dana (unverified)
    and her conversation answered the visitor. After the upgrade the visitor is not Dana,
    her conversation answers her again, and what was typed is a claim."""
    path = tmp_path / "old.db"
    conn = _schema_at(path, 6)
    conn.executescript(
        """
        INSERT INTO contacts(id, name, attributes, created_at, updated_at)
            VALUES ('ct_dana', 'Dana', '{}', 1, 1), ('ct_new', NULL, '{}', 1, 1);
        INSERT INTO identities(kind, address, contact_id, verified) VALUES
            ('email', 'dana@example.com', 'ct_dana', 1),
            ('webchat', 'v_attacker', 'ct_dana', 0),
            ('webchat', 'v_other', 'ct_new', 1),
            ('email', 'typed@example.com', 'ct_new', 0);
        INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel, status,
            queue, priority, created_at, updated_at, reply_kind, reply_address)
            VALUES ('cv_dana', 'ct_dana', 'mail', 'email', 'webchat', 'open', 'general', 1, 1, 2,
                    'webchat', 'v_attacker');
        """
    )
    conn.close()

    store = SqliteStore(path)
    await store.open()
    try:
        dana = await store.find_contact(Identity("email", "dana@example.com"))
        assert dana.identities == [("email", "dana@example.com", True)]
        assert dana.claims == []
        other = await store.find_contact(Identity("webchat", "v_other"))
        assert other.identities == [("webchat", "v_other", True)]
        assert other.claims == [("email", "typed@example.com")]
        conv = await store.get_conversation("cv_dana")
        assert (conv.last_channel, conv.reply_kind, conv.reply_address) == (
            "mail",
            "email",
            "dana@example.com",
        )
        await store.add_outbound(OutboundRequest("cv_dana", "refund", "agent", "alice", 10))
        [item] = await store.outbox_lease(20, 10, 30)
        assert (item.channel, item.to) == ("mail", Identity("email", "dana@example.com"))
    finally:
        await store.close()
