"""A fake `ConnectorContext`: what the core gives a connector, honestly imitated.

`submit` records events and dedupes inbound messages on `external_id` like the core
(returning `SubmitResult(duplicate=True)`); `kv` is in memory; `add_route` mounts routes on
a real aiohttp app served on a free port, so webhooks travel over real HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from connectors.base import (
    ConnectorContext,
    DeliveryReceipt,
    InboundMessage,
    RawItem,
    Refused,
    SubmitResult,
    Typing,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The public URL a fake gateway claims (what providers sign and call).
PUBLIC_URL = "https://support.example.com"

# A fixture that builds a connector on a FakeGateway: `await factory(**settings)`.
ChannelFactory = Callable[..., Awaitable[tuple[Any, "FakeGateway"]]]


class MemoryKV:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def lease(self, key: str, holder: str, ttl: float) -> bool:
        now = time.monotonic()
        current = self._leases.get(key)
        if current is None or current[0] == holder or current[1] <= now:
            self._leases[key] = (holder, now + ttl)
            return True
        return False


class FakeGateway:
    """The core as seen by one connector. Use `ctx` to build the connector, then `start()`.

    - `messages`: stored inbound messages (one per external_id), `receipts`: receipts,
      `submits`: every submit call in order (duplicates and failures included).
    - `fail_submits = n`: the next n submits raise (the store is down).
    - `quarantined`: (item, reason) kept with `ctx.quarantine`; `refuse = {external ids}`:
      submits of these raise `Refused` as the core does for a message it will never take.
    """

    def __init__(self, public_url: str | None = None, max_body_bytes: int = 1 << 20) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = web.Application(client_max_size=64 << 20)
        self.messages: dict[str, InboundMessage] = {}
        self.receipts: list[DeliveryReceipt] = []
        self.submits: list[InboundMessage | DeliveryReceipt | Typing] = []
        self.typing: list[Typing] = []
        self.fail_submits = 0
        self.submit_delay = 0.0
        self.quarantined: list[tuple[RawItem, str]] = []
        self.refuse: set[str] = set()
        self.kv = MemoryKV()
        self.session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._public_url = public_url
        self._max_body = max_body_bytes
        self._ctx: ConnectorContext | None = None

    @property
    def ctx(self) -> ConnectorContext:
        if self._ctx is None:
            self.session = aiohttp.ClientSession()
            self._ctx = ConnectorContext(
                submit=self.submit,
                http=self.session,
                add_route=self.add_route,
                kv=self.kv,
                log=logging.getLogger("test.connector"),
                public_url=self._public_url if self._public_url is not None else self.url,
                max_body_bytes=self._max_body,
                quarantine=self.quarantine,
            )
        return self._ctx

    async def quarantine(self, item: RawItem, reason: str) -> str:
        self.quarantined.append((item, reason))
        return f"q_{len(self.quarantined)}"

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        if self._runner is not None:
            raise RuntimeError("routes must be added before the app starts")
        self.app.router.add_route(method, path, handler)

    async def submit(self, event: InboundMessage | DeliveryReceipt | Typing) -> SubmitResult:
        self.submits.append(event)
        if self.submit_delay:
            await asyncio.sleep(self.submit_delay)
        if self.fail_submits > 0:
            self.fail_submits -= 1
            raise RuntimeError("store unavailable (injected)")
        if isinstance(event, Typing):  # published live, never stored
            self.typing.append(event)
            return SubmitResult(conversation_id=None, message_id=None)
        if isinstance(event, DeliveryReceipt):
            self.receipts.append(event)
            return SubmitResult(conversation_id=None, message_id=None)
        if event.external_id in self.refuse:
            qid = await self.quarantine(RawItem("application/json", b"{}"), "refused")
            raise Refused("refused (injected)", qid)
        if event.external_id in self.messages:
            return SubmitResult(
                "conv-1", self.messages[event.external_id].metadata.get("_id"), True
            )
        message_id = uuid.uuid4().hex
        event.metadata["_id"] = message_id
        self.messages[event.external_id] = event
        return SubmitResult("conv-1", message_id)

    async def wait_stored(self, count: int, within: float = 5.0) -> None:
        """Wait until `count` messages and receipts are stored (or fail after `within` s)."""
        deadline = time.monotonic() + within
        while len(self.messages) + len(self.receipts) < count:
            if time.monotonic() > deadline:
                stored = len(self.messages) + len(self.receipts)
                raise AssertionError(f"only {stored} of {count} stored after {within} s")
            await asyncio.sleep(0.01)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.SockSite(self._runner, self._sock)
        await site.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        else:
            self._sock.close()
        if self.session is not None:
            await self.session.close()
