"""Lease rows on SQLite: one file is one host, so the host's wall clock is the database's."""

from __future__ import annotations

import sqlite3
import time

from gateway.store.leaserows import LeaseRows
from gateway.store.sqlite.connection import SqliteBase

_FENCED = (
    "SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM kv"
    " WHERE key = 'fence:' || ? AND value GLOB '[0-9]*'"
)


class SqliteLeases(SqliteBase, LeaseRows):
    async def lease_take(
        self, name: str, holder: str, ttl: float, token: int | None = None
    ) -> tuple[bool, int]:
        def op(conn: sqlite3.Connection) -> tuple[bool, int]:
            now = time.time()
            conn.execute("INSERT OR IGNORE INTO coord_leases(name) VALUES (?)", (name,))
            current, row_token, expires = conn.execute(
                "SELECT holder, token, expires_at FROM coord_leases WHERE name=?", (name,)
            ).fetchone()
            seen = max(int(row_token), int(conn.execute(_FENCED, (name,)).fetchone()[0]))
            if current is not None and current != holder and expires > now:
                return False, seen
            if token is not None and token <= seen:
                return False, seen
            issued = seen + 1 if token is None else token
            conn.execute(
                "UPDATE coord_leases SET holder=?, token=?, expires_at=? WHERE name=?",
                (holder, issued, now + ttl, name),
            )
            return True, issued

        return await self._tx(op)

    async def lease_renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE coord_leases SET expires_at=? WHERE name=? AND holder=? AND token=?",
                (time.time() + ttl, name, holder, token),
            )
            return cur.rowcount == 1

        return await self._tx(op)

    async def lease_release(self, name: str, holder: str, token: int) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "UPDATE coord_leases SET holder=NULL, expires_at=0"
                " WHERE name=? AND holder=? AND token=?",
                (name, holder, token),
            )
        )

    async def lease_advance(self, name: str, floor: int) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "INSERT INTO coord_leases(name, token) VALUES (?,?)"
                " ON CONFLICT(name) DO UPDATE SET token=max(coord_leases.token, excluded.token)",
                (name, floor),
            )
        )

    async def lease_row(self, name: str) -> tuple[str | None, int, float] | None:
        def op(conn: sqlite3.Connection) -> tuple[str | None, int, float] | None:
            row = conn.execute(
                "SELECT holder, token, expires_at FROM coord_leases WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                return None
            return row[0], int(row[1]), max(0.0, float(row[2]) - time.time())

        return await self._run(op)
