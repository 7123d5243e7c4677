"""What the cluster tests run: a PostgreSQL of the test's own that can be stopped and started
again on the same data directory, and `switchboard run` daemons on one shared config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.pg import PgServer


class OwnPg(PgServer):
    """A private server for one test: `pause` stops it (`pg_ctl stop -m fast`, as an
    administrator or a failover would) and `resume` starts it again on the same port and
    data directory. The session's shared server is never stopped."""

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )

    def pause(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            self._options(),
            "start",
        )


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def half_written(dsn: str) -> dict[str, int]:
    """Rows that only make sense with another row that is missing: what a commit cut in
    half would leave. Every count must be 0."""
    checks = {
        "conversations without a message": (
            "SELECT count(*) FROM conversations c"
            " WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)"
        ),
        "messages without a conversation": (
            "SELECT count(*) FROM messages m"
            " WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = m.conversation_id)"
        ),
        "inbound messages without their event": (
            "SELECT count(*) FROM messages m WHERE m.direction = 'in' AND NOT EXISTS"
            " (SELECT 1 FROM events e WHERE e.type = 'message.received'"
            " AND e.data::jsonb ->> 'message_id' = m.id)"
        ),
        "conversations without their created event": (
            "SELECT count(*) FROM conversations c WHERE NOT EXISTS"
            " (SELECT 1 FROM events e WHERE e.type = 'conversation.created'"
            " AND e.data::jsonb -> 'conversation' ->> 'id' = c.id)"
        ),
        "contacts without an identity": (
            "SELECT count(*) FROM contacts k WHERE k.merged_into IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM identities i WHERE i.contact_id = k.id)"
        ),
    }
    out = {}
    for name, sql in checks.items():
        out[name] = int((await query(dsn, sql))[0][0])
    return out


def log_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"level": "raw", "msg": line})
    return out


async def until(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2) -> None:
    """Wait until `check()` is true, or fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(every)


async def readyz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=15)) as r:
        return r.status, await r.json()
