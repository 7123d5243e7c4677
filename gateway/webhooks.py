"""Signed event webhooks for a helpdesk running beside the gateway.

Each configured endpoint has a cursor into the durable event log (kept in the store).
A worker reads the log from the cursor (gateway/eventlog.py), POSTs the events in order, signed with Standard Webhooks
(`webhook-id: evt_<event id>`, stable across retries), and advances the cursor only
after a 2xx — so delivery is ordered and at-least-once, and survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging

import aiohttp

from connectors import egress
from connectors.signing import decode_secret, headers
from gateway.config import WebhookConfig
from gateway.coord.leases import Lease, Leases
from gateway.eventlog import POLL_INTERVAL, CursorExpired, LogReader
from gateway.eventloop import stop_tasks
from gateway.events import EventBus
from gateway.model import Event, event_json
from gateway.outbox import backoff
from gateway.store.base import Store

log = logging.getLogger("switchboard.webhooks")


class _Endpoint:
    def __init__(
        self,
        cfg: WebhookConfig,
        store: Store,
        http: aiohttp.ClientSession,
        lease: Lease | None = None,
    ) -> None:
        self.cfg = cfg
        # What logs show of the URL: it may carry the endpoint's credential.
        self.shown_url = egress.redacted_url(cfg.url)
        # Several instances: the holder of this lease sends to the endpoint (issue 11); its
        # cursor is written with the lease's fencing token.
        self.lease = lease
        self.key = decode_secret(cfg.secret.get_secret_value())
        self.store = store
        self.http = http
        # Keyed by URL: reordering or adding endpoints never moves another one's place.
        self.cursor_key = f"webhook:{cfg.url}"
        self.cursor = 0
        self.wake = asyncio.Event()
        self.stopping = False

    async def load_cursor(self) -> None:
        """A new endpoint starts at the current end of the log; a known one where it was."""
        text = await self.store.kv_get("webhooks", self.cursor_key)
        if text is None:
            self.cursor = await self.store.last_event_id()
            await self.store.kv_set("webhooks", self.cursor_key, str(self.cursor))
        else:
            self.cursor = int(text)

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.cfg.events)

    async def save_cursor(self) -> bool:
        """Persist the cursor; False when a newer holder of the lease has written (this
        instance stops sending)."""
        value = str(self.cursor)
        token = self.lease.token if self.lease is not None else None
        if token is None:
            await self.store.kv_set("webhooks", self.cursor_key, value)
            return True
        assert self.lease is not None
        if await self.store.kv_set_fenced(
            "webhooks", self.cursor_key, value, self.lease.name, token
        ):
            return True
        seen = await self.store.kv_get("webhooks", f"fence:{self.lease.name}")
        await self.lease.refused(int(seen) if seen and seen.isdigit() else None)
        return False

    def holding(self) -> bool:
        return self.lease is None or self.lease.held

    async def run(self) -> None:
        """Deliver until stopped; a store error is logged and retried, never the end of
        delivery. Every wait also checks `stopping`: Python 3.11 can lose a cancellation."""
        while not self.stopping:
            try:
                if self.lease is not None and not self.lease.held:
                    if not await self.lease.try_acquire():
                        await asyncio.sleep(self.lease.retry)
                        continue
                    await self.load_cursor()  # where the previous holder left it
                await self._deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "webhook delivery loop failed; retrying", extra={"url": self.shown_url}
                )
                await asyncio.sleep(5.0)

    async def _read(self, reader: LogReader) -> list[Event]:
        """The next events after the cursor; a cursor that fell off the pruned log resumes
        at the oldest event kept, and says so once."""
        try:
            return await reader.read(100)
        except CursorExpired as exc:
            log.warning(
                "webhook endpoint fell behind the event log's retention; events were lost "
                "to it, resuming at the oldest kept",
                extra={"url": self.shown_url, "cursor": exc.cursor, "oldest_id": exc.oldest},
            )
            self.cursor = reader.cursor = exc.oldest - 1
            await self.save_cursor()
            return await reader.read(100)

    async def _deliver(self) -> None:
        failures = 0
        reader = LogReader(self.store, self.cursor)
        while not self.stopping and self.holding():
            self.wake.clear()
            batch = await self._read(reader)
            if not batch:
                if self.stopping:
                    return
                # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when it
                # is cancelled just as the wake arrives, and the cancellation is lost.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05 if reader.holding else POLL_INTERVAL):
                        await self.wake.wait()
                continue
            for event in batch:
                if self.wants(event.type):
                    while not await self._post(event):
                        if self.stopping or not self.holding():
                            return
                        failures += 1
                        await asyncio.sleep(backoff(failures, 1.0, 300.0))
                    failures = 0
                self.cursor = event.id
                if not await self.save_cursor() or self.stopping:
                    return

    async def _post(self, event: Event) -> bool:
        body = event_json(event).encode()
        hdrs = headers(self.key, f"evt_{event.id}", body) | {"Content-Type": "application/json"}
        try:
            # Resolved and checked now, then sent to the address checked (SSRF guard).
            target = await egress.target(
                self.cfg.url, allow_private=self.cfg.allow_private_networks
            )
        except egress.RefusedTarget as exc:
            log.warning(
                "webhook refused: not a public address",
                extra={"url": self.shown_url, "error": str(exc)},
            )
            return False
        except OSError as exc:
            log.warning(
                "webhook unreachable", extra={"url": self.shown_url, "error": type(exc).__name__}
            )
            return False
        try:
            async with self.http.post(
                target.url,
                data=body,
                headers=hdrs | target.headers,
                server_hostname=target.server_hostname,
                allow_redirects=False,  # a redirect could point anywhere
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r:
                if 200 <= r.status < 300:
                    return True
                log.warning("webhook refused", extra={"url": self.shown_url, "status": r.status})
                return False
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(
                "webhook unreachable", extra={"url": self.shown_url, "error": type(exc).__name__}
            )
            return False


class WebhookSender:
    def __init__(self, configs: list[WebhookConfig], store: Store) -> None:
        self.configs = configs
        self.store = store
        # Set by the gateway when several instances share the work (gateway/coord/leases.py).
        self.leases: Leases | None = None
        self._endpoints: list[_Endpoint] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, bus: EventBus, http: aiohttp.ClientSession) -> None:
        """Load every cursor, then deliver. Called before the gateway accepts anything, so
        no event falls between a new endpoint's starting point and its first delivery."""
        for cfg in self.configs:
            lease = None
            if self.leases is not None and self.leases.shared:
                lease = self.leases.lease(f"webhook:{cfg.url}")
            endpoint = _Endpoint(cfg, self.store, http, lease)
            await endpoint.load_cursor()
            self._endpoints.append(endpoint)
        for endpoint in self._endpoints:
            self._tasks.append(
                asyncio.create_task(endpoint.run(), name=f"webhook {endpoint.shown_url}")
            )
        if self._endpoints:
            bus.listen(self._wake_all)

    def _wake_all(self, _event: Event) -> None:
        for endpoint in self._endpoints:
            endpoint.wake.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering (the cursors stay where they are). Each loop ends on its flag
        as well as on the cancellation, and they are waited for at most `timeout`."""
        for endpoint in self._endpoints:
            endpoint.stopping = True
            endpoint.wake.set()
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks, timeout, "webhook delivery")
        for endpoint in self._endpoints:
            if endpoint.lease is not None:
                await endpoint.lease.release()
