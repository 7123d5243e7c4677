"""Lease rows on PostgreSQL: expiry by the database server's clock (`clock_timestamp()`)."""

from __future__ import annotations

from gateway.store.leaserows import LeaseRows
from gateway.store.postgres.pool import Conn, PgBase

# The highest token a fenced write recorded for the lease (kv `fence:<name>`, any namespace).
_FENCED = (
    "SELECT coalesce(max(value::bigint), 0) FROM kv"
    " WHERE key = 'fence:' || $1 AND value ~ '^[0-9]{1,18}$'"
)


class PgLeases(PgBase, LeaseRows):
    async def lease_take(
        self, name: str, holder: str, ttl: float, token: int | None = None
    ) -> tuple[bool, int]:
        async def op(conn: Conn) -> tuple[bool, int]:
            await conn.execute(
                "INSERT INTO coord_leases(name) VALUES ($1) ON CONFLICT(name) DO NOTHING", name
            )
            row = await conn.fetchrow(
                "SELECT holder, token, expires_at > clock_timestamp() AS live"
                " FROM coord_leases WHERE name=$1 FOR UPDATE",
                name,
            )
            assert row is not None
            seen = max(int(row["token"]), int(await conn.fetchval(_FENCED, name)))
            if row["live"] and row["holder"] is not None and row["holder"] != holder:
                return False, seen
            if token is not None and token <= seen:
                return False, seen  # Redis lost its counter: it must be moved past `seen`
            issued = seen + 1 if token is None else token
            await conn.execute(
                "UPDATE coord_leases SET holder=$2, token=$3,"
                " expires_at = clock_timestamp() + make_interval(secs => $4) WHERE name=$1",
                name,
                holder,
                issued,
                ttl,
            )
            return True, issued

        return await self._tx(op)

    async def lease_renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        async def op(conn: Conn) -> bool:
            done = await conn.fetchval(
                "UPDATE coord_leases SET expires_at = clock_timestamp() + make_interval(secs => $4)"
                " WHERE name=$1 AND holder=$2 AND token=$3 RETURNING TRUE",
                name,
                holder,
                token,
                ttl,
            )
            return bool(done)

        return await self._tx(op)

    async def lease_release(self, name: str, holder: str, token: int) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE coord_leases SET holder=NULL, expires_at='-infinity'"
                " WHERE name=$1 AND holder=$2 AND token=$3",
                name,
                holder,
                token,
            )

        await self._tx(op)

    async def lease_advance(self, name: str, floor: int) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO coord_leases(name, token) VALUES ($1, $2)"
                " ON CONFLICT(name) DO UPDATE SET token = greatest(coord_leases.token, $2)",
                name,
                floor,
            )

        await self._tx(op)

    async def lease_row(self, name: str) -> tuple[str | None, int, float] | None:
        async def op(conn: Conn) -> tuple[str | None, int, float] | None:
            row = await conn.fetchrow(
                "SELECT holder, token, CASE WHEN expires_at = '-infinity' THEN 0 ELSE"
                " greatest(0, extract(epoch FROM expires_at - clock_timestamp())) END AS left"
                " FROM coord_leases WHERE name=$1",
                name,
            )
            if row is None:
                return None
            return row["holder"], int(row["token"]), float(row["left"])

        return await self._read(op)
