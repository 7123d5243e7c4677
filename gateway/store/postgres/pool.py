"""The PostgreSQL store's plumbing: the connection pool, transactions, migrations, rows.

Each store operation is one function run in one transaction on one pooled connection
(`_tx`), at READ COMMITTED: what must not race is guarded by the row it changes (a
conditional update, a `FOR UPDATE` lock, `SKIP LOCKED` where a worker takes work) and by the
constraints of the schema. A transaction that loses a deadlock, or that a constraint refused
because another instance made the same row first, runs again from the start (`retry`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from connectors.base import Identity
from gateway.domain import identity
from gateway.model import Contact, Conversation, Message
from gateway.store.base import NotFound, Unstorable
from gateway.store.outage import Outage, StoreUnavailable
from gateway.store.postgres.migrations import MIGRATIONS
from gateway.store.rows import CONV_COLS as CONV_COLS
from gateway.store.rows import MSG_COLS as MSG_COLS
from gateway.store.rows import contact_row
from gateway.store.rows import conv_row as conv_row
from gateway.store.rows import msg_row as msg_row

T = TypeVar("T")
if TYPE_CHECKING:  # generic in the stubs only
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]
else:
    Conn = asyncpg.pool.PoolConnectionProxy
log = logging.getLogger("gateway.store.postgres")

# Any number: the key of the advisory lock that serialises migrations across instances.
MIGRATION_LOCK = 0x5B_57_0C_DB
# How long a health check waits for the database.
PING_TIMEOUT = 5.0
# How often a transaction that lost a race is run again before its error is the answer.
ATTEMPTS = 8
# Lost a race: run again.
RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
# The server cannot be reached: refused or reset connections, a connection lost mid-way, a
# server shutting down or starting up, a connect or command timeout (TimeoutError is an
# OSError). Callers see `StoreUnavailable` (gateway/store/outage.py).
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    # What asyncpg raises when the server goes away while it is between two protocol
    # states (a COMMIT meeting a terminated connection); the pool drops that connection.
    asyncpg.exceptions.InternalClientError,
)

# The input holds what PostgreSQL text cannot (U+0000, a character the encoding lacks):
# callers see `Unstorable` (the API answers 400), not a driver error (a 500).
UNSTORABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


def lost(exc: BaseException) -> bool:
    """`exc` says the server cannot be reached (also asyncpg's "the underlying connection
    is closed", raised when a transaction ends on a connection the server terminated)."""
    if isinstance(exc, UNREACHABLE):
        return True
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc)


class PgBase:
    """What every role module of `PostgresStore` uses: the pool and the transaction."""

    def __init__(self, dsn: str, pool_size: int = 10, instance: str | None = None) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        # Recorded as the holder of what this store object leases (outbox items).
        self.instance = instance or uuid.uuid4().hex[:12]
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        # Whether the server answers, from the operations that run; logged once per interval.
        self.outage = Outage("store (PostgreSQL)")

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.pool_size, command_timeout=60, timeout=10
        )
        try:
            await migrate(self._pool)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> bool:
        """The database answers, within PING_TIMEOUT (a server that is gone can otherwise
        keep a new connection waiting for the whole connect timeout)."""
        try:
            await asyncio.wait_for(self._read(lambda conn: conn.fetchval("SELECT 1")), PING_TIMEOUT)
        except StoreUnavailable:
            return False
        except Exception as exc:
            self.outage.failed(exc)
            return False
        return True

    def down_reason(self) -> str | None:
        return self.outage.reason

    def _unreachable(self, exc: BaseException) -> StoreUnavailable:
        self.outage.failed(exc)
        return StoreUnavailable(f"PostgreSQL unreachable: {type(exc).__name__}")

    def _translated(self, exc: BaseException) -> Exception | None:
        """What callers see instead of a driver error: `StoreUnavailable` for a server that
        cannot be reached, `Unstorable` for input text cannot hold; None: raise it as it is."""
        if lost(exc):
            return self._unreachable(exc)
        if isinstance(exc, UNSTORABLE):
            return Unstorable(f"PostgreSQL cannot store this text: {exc}")
        return None

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection, outside a transaction (each statement sees
        what is committed when it starts)."""
        try:
            async with self.pool.acquire() as conn:
                result = await fn(conn)
        except Exception as exc:
            if (translated := self._translated(exc)) is None:
                raise
            raise translated from exc
        self.outage.succeeded()
        return result

    async def _tx(
        self,
        fn: Callable[[Conn], Awaitable[T]],
        retry: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Run `fn` in one transaction: commit on return, roll back on error. Lost races
        (a deadlock, and the errors in `retry`) run it again, from the start. A server that
        cannot be reached raises `StoreUnavailable` (the transaction did not commit, or a
        connection lost during COMMIT leaves it unknown: callers retry idempotently)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    result = await fn(conn)
                self.outage.succeeded()
                return result
            except (*RETRYABLE, *retry) as exc:
                if attempt == ATTEMPTS:
                    raise
                log.debug("transaction retried", extra={"error": type(exc).__name__})
            except Exception as exc:
                if (translated := self._translated(exc)) is None:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")


async def migrate(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    """Apply the migrations not applied yet, all in one transaction holding the migration
    lock: instances starting together against an empty database wait for the first."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, script in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_migrations(version) VALUES ($1)", version)
            log.info("store migrated", extra={"version": version})


# --- rows (the mapping is the same on SQLite: gateway/store/rows.py) ---------------------


async def get_conv(conn: Conn, conversation_id: str, lock: bool = False) -> Conversation:
    """The conversation; with `lock`, its row is held until the transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {CONV_COLS} FROM conversations WHERE id=$1" + (" FOR UPDATE" if lock else ""),
        conversation_id,
    )
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return conv_row(row)


async def get_msg(conn: Conn, message_id: str) -> Message:
    row = await conn.fetchrow(f"SELECT {MSG_COLS} FROM messages WHERE id=$1", message_id)
    if row is None:
        raise NotFound(f"message {message_id} not found")
    return msg_row(row)


async def resolve_contact_id(conn: Conn, contact_id: str) -> str:
    """The contact that answers for `contact_id` now (gateway/domain/identity.py): its
    chain of merges read in one query, followed by the rule."""
    chain = {
        str(r[0]): r[1]
        for r in await conn.fetch(
            "WITH RECURSIVE chain(id, merged_into) AS ("
            " SELECT id, merged_into FROM contacts WHERE id=$1"
            " UNION SELECT c.id, c.merged_into FROM contacts c JOIN chain ON c.id = chain.merged_into)"
            " SELECT id, merged_into FROM chain",
            contact_id,
        )
    }
    return identity.follow_merges(contact_id, lambda c: chain.get(c))


async def contact_of(conn: Conn, who: Identity) -> str | None:
    """The contact holding `who`, merges followed: the identity and its chain of merges in
    one query (one round trip on the hot path of every ingest)."""
    rows = await conn.fetch(
        "WITH RECURSIVE start AS ("
        " SELECT contact_id FROM identities WHERE kind=$1 AND address=$2),"
        " chain(id, merged_into) AS ("
        " SELECT c.id, c.merged_into FROM contacts c JOIN start ON c.id = start.contact_id"
        " UNION SELECT c.id, c.merged_into FROM contacts c JOIN chain ON c.id = chain.merged_into)"
        " SELECT (SELECT contact_id FROM start), id, merged_into FROM chain",
        who.kind,
        who.address,
    )
    if not rows:
        return None
    chain = {str(r[1]): r[2] for r in rows}
    return identity.follow_merges(str(rows[0][0]), lambda c: chain.get(c))


async def get_contact(conn: Conn, contact_id: str) -> Contact:
    row = await conn.fetchrow(
        "SELECT id, name, attributes, created_at, merged_into FROM contacts WHERE id=$1",
        contact_id,
    )
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    # A contact shows the identities of the contacts merged into it.
    identities = await conn.fetch(
        "SELECT kind, address, verified FROM identities WHERE contact_id=$1 OR contact_id IN"
        " (SELECT id FROM contacts WHERE merged_into=$1) ORDER BY kind, address",
        contact_id,
    )
    claims = await conn.fetch(
        "SELECT kind, address FROM claims WHERE contact_id=$1 ORDER BY created_at, kind, address",
        contact_id,
    )
    return contact_row(row, identities, claims)


def scope_where(clause: str, args: list[str], first: int) -> tuple[str, list[str]]:
    """`Scope.where` (SQLite `?` marks) as PostgreSQL `$n` marks numbered from `first`."""
    if clause == "(0)":  # sees nothing: SQLite's false is PostgreSQL's FALSE
        return "FALSE", []
    parts = clause.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += f"${first + i}" + part
    return out, args


def rowcount(status: str) -> int:
    """The row count of a command status such as `UPDATE 3` or `INSERT 0 1`."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
