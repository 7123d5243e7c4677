"""Key-value pairs and leases of the SQLite store."""

from __future__ import annotations

import sqlite3

from gateway.store.sqlite.connection import SqliteBase


class SqliteKeyValue(SqliteBase):
    # --- kv --------------------------------------------------------------------------------
    async def kv_get(self, namespace: str, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op)

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                (namespace, key, value),
            )
        )

    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        def op(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO NOTHING",
                (namespace, key, value),
            )
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            return str(row[0])

        return await self._tx(op)

    async def kv_delete(self, namespace: str, key: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key)
            )
        )

    async def kv_lease(self, namespace: str, key: str, holder: str, ttl: float, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT holder, expires_at FROM leases WHERE name=?", (f"{namespace}:{key}",)
            ).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            conn.execute(
                "INSERT INTO leases(name, holder, expires_at) VALUES (?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at",
                (f"{namespace}:{key}", holder, now + ttl),
            )
            return True

        return await self._tx(op)

    async def kv_set_fenced(
        self, namespace: str, key: str, value: str, fence: str, token: int
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            taken = conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value"
                " WHERE CAST(kv.value AS INTEGER) <= CAST(excluded.value AS INTEGER)"
                " RETURNING 1",
                (namespace, f"fence:{fence}", str(token)),
            ).fetchone()
            if taken is None:
                return False
            conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                (namespace, key, value),
            )
            return True

        return await self._tx(op)
