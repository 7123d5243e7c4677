"""A private PostgreSQL server for the tests: initdb in a temp dir, started on a free port,
stopped by its data directory at the end (shared/recipes/postgres-redis-for-tests.md).

Never a server that happens to run on the machine. As root, PostgreSQL runs as the
`postgres` user the Debian package creates. `fsync=off`: test speed only."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import asyncpg


def pg_bin() -> Path:
    """The newest installed server's binaries (scripts/test installs `postgresql`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/test (apt: postgresql)")
    return Path(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="sb-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: list[str] = []
        self._started = False
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            options,
            "start",
        )
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    _running: PgServer | None = None

    @classmethod
    def running(cls) -> PgServer:
        """The server of this test session (the `pg_server` fixture)."""
        if cls._running is None:
            raise RuntimeError("no PostgreSQL server started: use the pg_server fixture")
        return cls._running

    def schema_dsn(self, place: Path) -> str:
        """The DSN of a schema of its own for `place` (a test's directory), made when first
        asked for: the same place gives the same schema, so two store objects made for one
        place share a database as two instances do. Made with psql, synchronously: a store
        factory is not a coroutine."""
        name = "p_" + hashlib.sha256(str(place).encode()).hexdigest()[:16]
        subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                str(self.dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                f'CREATE SCHEMA IF NOT EXISTS "{name}"',
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{self.dsn}?search_path={name}"

    async def new_database(self) -> str:
        """A fresh, empty schema of its own (one per test), as the DSN of a database whose
        connections see only it (`search_path`). A schema, not a database: CREATE DATABASE
        copies a template (~1 s here) and every copy is written out again at shutdown."""
        name = "t_" + uuid.uuid4().hex[:16]
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await conn.close()
        return f"{self.dsn}?search_path={name}"
