"""The outbox: durable outbound delivery with retries.

Every outbound message is persisted (status `queued`) before anything is sent. A worker
leases due entries, hands each to its channel's connector, and records the result:
`sent`; `retry` with capped exponential backoff and full jitter, honouring `retry_after`,
until the channel's retry horizon (hours by default, counted from when the reply was
queued; optionally also a number of attempts) runs out; or, then or on `failed`, the
message is failed with its reason and a `message.failed` event. Leases make in-flight work survive a crash: an entry whose
worker died becomes due again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from connectors.base import Capability, Choice, Connector, DeliveryResult, OutboundMessage, Prompt
from gateway.config import OutboxConfig, RetryPolicy
from gateway.eventloop import stop_tasks
from gateway.events import EventBus
from gateway.metrics import METRICS
from gateway.services import Services
from gateway.store.base import OutboxItem, Store

log = logging.getLogger("switchboard.outbox")


def backoff(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Delay before attempt `attempt + 1`: full jitter, uniform over
    [0, min(cap, base·2^(attempt-1))] (spreads a recovering provider's load best)."""
    ceiling = min(cap, base * (2 ** min(max(0, attempt - 1), 60)))
    return float(rng() * ceiling)


def retry_delay(attempt: int, result: DeliveryResult, config: OutboxConfig) -> float:
    """Seconds before the next attempt: the provider's `retry_after` when it gives one,
    within [0, max_delay] (a bogus or endless value must not park a reply for ever);
    otherwise exponential backoff with jitter."""
    if result.retry_after is not None:
        wanted = result.retry_after if math.isfinite(result.retry_after) else config.max_delay
        return min(max(wanted, 0.0), config.max_delay)
    return backoff(attempt, config.base_delay, config.max_delay)


def degrade(
    item: OutboxItem, connector: Connector, names: Mapping[str, str] | None = None
) -> OutboundMessage:
    """The message as this channel can carry it: rich parts it lacks are dropped; the
    sender is shown by display name."""
    caps = connector.capabilities
    sender = item.sender_name
    if names and sender is not None:
        sender = names.get(sender, sender)
    return OutboundMessage(
        id=item.message_id,
        conversation_id=item.conversation_id,
        to=item.to,
        text=item.text,
        html=item.html if Capability.HTML in caps else None,
        subject=item.subject if Capability.SUBJECT in caps else None,
        thread_refs=item.thread_refs,
        thread_token=item.thread_token,
        sender_name=sender,
        automatic=item.automatic,
        attempt=item.attempts + 1,
        prompt=prompt_of(item.prompt),
    )


def prompt_of(stored: dict[str, Any] | None) -> Prompt | None:
    """A stored prompt (a survey's question) as the connector contract carries it."""
    if not stored:
        return None
    return Prompt(
        id=str(stored["id"]),
        choices=[Choice(str(c["value"]), str(c["label"]), c.get("url")) for c in stored["choices"]],
        comment_url=stored.get("comment_url"),
        optout_url=stored.get("optout_url"),
        comment=bool(stored.get("comment")),
        template=stored.get("template"),
        texts=dict(stored.get("texts") or {}),
    )


async def _send_direct(
    channel: str, connector: Connector, message: OutboundMessage
) -> DeliveryResult:
    return await connector.send(message)


class Outbox:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        connectors: Mapping[str, Connector],
        config: OutboxConfig,
        clock: Callable[[], float] = time.time,
        lease_seconds: float | None = None,
        agent_names: Mapping[str, str] | None = None,
        policies: Mapping[str, RetryPolicy | None] | None = None,
        services: Services | None = None,
    ) -> None:
        self.agent_names = dict(agent_names or {})
        self.policies = dict(policies or {})
        self.store = store
        # Results commit through the one commit path (the gateway's, else one on `bus`).
        self.services = services or Services(store, bus, clock)
        self.connectors = connectors
        self.config = config
        self.clock = clock
        self.lease_seconds = lease_seconds or config.send_timeout + 30
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(config.concurrency)
        # How a message goes out (channel, connector, message): the connector's own send,
        # or the coordinator's when another instance may hold the customer's socket.
        self.send: Callable[[str, Connector, OutboundMessage], Awaitable[DeliveryResult]] = (
            _send_direct
        )

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="outbox")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop leasing new work and let in-flight sends finish, all within `timeout`:
        sends still running then are cancelled (their leases expire and they are sent
        again after a restart).

        The loop stops on its flag as well as on the cancellation, and is waited for with
        a bound: on Python 3.11 a cancellation can be lost inside `asyncio.wait_for` and
        elsewhere, and a stop must not depend on it arriving."""
        deadline = asyncio.get_running_loop().time() + timeout
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        await stop_tasks([task] if task else [], timeout, "outbox loop")
        if self._inflight:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(set(self._inflight), timeout=left)
            for send in pending:
                send.cancel()
            if pending:
                # a cancelled send ends at its next await; do not wait on one that does not
                await asyncio.wait(pending, timeout=0.1)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                free = self.config.concurrency - len(self._inflight)
                items = (
                    await self.store.outbox_lease(self.clock(), free, self.lease_seconds)
                    if free > 0
                    else []
                )
                for item in items:
                    await self._sem.acquire()
                    task = asyncio.create_task(self._deliver(item))
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                if items and len(items) == free:
                    continue
                due = await self.store.outbox_next_due()
                wait = 5.0 if due is None else max(0.0, min(5.0, due - self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox loop failed")
                wait = 1.0
            if self._stopping:
                break
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when it is
            # cancelled just as the wake arrives, and the cancellation is lost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._sem.release()
        self._wake.set()

    async def _deliver(self, item: OutboxItem) -> None:
        connector = self.connectors.get(item.channel)
        attempt = item.attempts + 1
        if connector is None:
            result = DeliveryResult.retry(f"channel {item.channel} is not running")
        else:
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    self.send(item.channel, connector, degrade(item, connector, self.agent_names)),
                    self.config.send_timeout,
                )
            except TimeoutError:
                result = DeliveryResult.retry("send timed out")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("connector send raised", extra={"channel": item.channel})
                result = DeliveryResult.retry(f"connector error: {type(exc).__name__}")
            METRICS.outbox_send_seconds.labels(item.channel).observe(time.perf_counter() - started)
        next_at: float | None = None
        if result.status == "retry":
            result, next_at = self._next_attempt(item, attempt, result)
        METRICS.messages_out.labels(item.channel, result.status).inc()
        if result.status != "sent":
            log.info(
                "delivery attempt not sent",
                extra={
                    "channel": item.channel,
                    "message_id": item.message_id,
                    "attempt": attempt,
                    "status": result.status,
                    "reason": result.reason,
                },
            )
        await self.services.outbox_record(item.message_id, result, next_at)

    def _next_attempt(
        self, item: OutboxItem, attempt: int, result: DeliveryResult
    ) -> tuple[DeliveryResult, float | None]:
        """When to try again, or the final `failed` once the horizon or the count is spent.
        The last attempt is placed at the horizon itself, not skipped."""
        horizon, max_attempts = self.config.policy_for(self.policies.get(item.channel))
        now = self.clock()
        deadline = item.queued_at + horizon
        reason = result.reason or "retry"
        if max_attempts is not None and attempt >= max_attempts and not result.deferred:
            return DeliveryResult.failed(f"gave up after {attempt} attempts: {reason}"), None
        if now >= deadline:
            hours = horizon / 3600
            return (
                DeliveryResult.failed(
                    f"gave up after {attempt} attempts over {hours:g} h: {reason}"
                ),
                None,
            )
        return result, min(now + retry_delay(attempt, result, self.config), deadline)
