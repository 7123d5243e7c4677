"""SQLite-specific behaviour the contract suite cannot express."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import SqliteStore


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
