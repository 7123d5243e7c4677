"""Connector key-value state and leases on PostgreSQL."""

from __future__ import annotations

from gateway.store.base import KeyValueStore
from gateway.store.postgres.pool import Conn, PgBase


class PgKv(PgBase, KeyValueStore):
    async def kv_get(self, namespace: str, key: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            value = await conn.fetchval(
                "SELECT value FROM kv WHERE namespace=$1 AND key=$2", namespace, key
            )
            return None if value is None else str(value)

        return await self._read(op)

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                namespace,
                key,
                value,
            )

        await self._tx(op)

    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        """A concurrent insert of the key makes ours wait for its commit and do nothing; the
        read after it (a new statement: a new snapshot) sees the row that won."""

        async def op(conn: Conn) -> str:
            await conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT(namespace, key) DO NOTHING",
                namespace,
                key,
                value,
            )
            kept = await conn.fetchval(
                "SELECT value FROM kv WHERE namespace=$1 AND key=$2", namespace, key
            )
            return str(kept)

        return await self._tx(op)

    async def kv_delete(self, namespace: str, key: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM kv WHERE namespace=$1 AND key=$2", namespace, key)

        await self._tx(op)

    async def kv_lease(self, namespace: str, key: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the lease: one statement, so two instances asking at once get one
        answer each, and only one of them the lease."""

        async def op(conn: Conn) -> bool:
            taken = await conn.fetchval(
                "INSERT INTO leases(name, holder, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT(name) DO UPDATE SET holder=excluded.holder,"
                " expires_at=excluded.expires_at"
                " WHERE leases.holder = excluded.holder OR leases.expires_at <= $4"
                " RETURNING TRUE",
                f"{namespace}:{key}",
                holder,
                now + ttl,
                now,
            )
            return bool(taken)

        return await self._tx(op)

    async def kv_set_fenced(
        self, namespace: str, key: str, value: str, fence: str, token: int
    ) -> bool:
        """The fence row is locked by the conditional upsert until the transaction ends, so
        two holders writing at once are serialised and the older one refused."""

        async def op(conn: Conn) -> bool:
            taken = await conn.fetchval(
                "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value"
                " WHERE kv.value::bigint <= excluded.value::bigint"
                " RETURNING TRUE",
                namespace,
                f"fence:{fence}",
                str(token),
            )
            if not taken:
                return False
            await conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES ($1, $2, $3)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                namespace,
                key,
                value,
            )
            return True

        return await self._tx(op)
