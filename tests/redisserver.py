"""A private Redis server for the tests: started on a free port in a temp dir, stopped by
its PID at the end (shared/recipes/postgres-redis-for-tests.md). Never a server that
happens to run on the machine. It can be killed (SIGKILL, like a crash) and started again
on the same port and directory, replaying its append-only file."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.pg import free_port


def redis_bin() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RuntimeError("redis-server is not installed: run scripts/test (apt: redis-server)")
    return found


class RedisServer:
    def __init__(self) -> None:
        self.bin = redis_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="sb-redis-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._db = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again after `kill`/`stop`) on the same port and directory."""
        self._proc = subprocess.Popen(
            [
                self.bin,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or self._proc.poll() is not None:
                        raise RuntimeError(
                            f"redis-server did not start: see {self.dir / 'redis.log'}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, like a crash: whatever the clients were doing is cut off."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_url(self) -> str:
        """A URL of a logical database to itself for one test (16 by default; past that
        they are flushed and reused: a test must not depend on another's keys)."""
        self._db = (self._db + 1) % 16
        client = redis.Redis(host="127.0.0.1", port=self.port, db=self._db)
        try:
            client.flushdb()
        finally:
            client.close()
        return f"redis://127.0.0.1:{self.port}/{self._db}"

    _running: RedisServer | None = None

    @classmethod
    def running(cls) -> RedisServer:
        if cls._running is None:
            raise RuntimeError("no Redis server started: use the redis_server fixture")
        return cls._running


def own_server() -> RedisServer:
    """A server of its own (for a test that kills or restarts it); `close()` it after."""
    server = RedisServer()
    server.start()
    return server


__all__ = ["RedisServer", "own_server"]
