"""A small aiohttp server that can be stopped and started again on the same port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Recorded:
    """One request a stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class RestartableServer:
    """Serves `make_app()` on a fixed port; `stop()` closes the listener and every open
    connection (like a crashed or unreachable provider), `start()` comes back up."""

    def __init__(self, make_app: Callable[[], web.Application], port: int | None = None) -> None:
        self.make_app = make_app
        self.port = port or free_port()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._site is not None

    async def start(self) -> None:
        if self._runner is None:
            self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.2)
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    async def stop(self) -> None:
        """Go down: connections are refused until `start()` again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def close(self) -> None:
        await self.stop()


class Standin:
    """A provider stand-in's lifecycle: it serves on `self.server`, and can be stopped
    (the provider is down) and started again on the same port."""

    server: RestartableServer

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def close(self) -> None:
        await self.server.close()
