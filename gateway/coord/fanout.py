"""Wake-ups and fan-out between gateway instances over Redis pub/sub.

What travels (all on `{prefix}:...` channels, gateway/coord/keys.py):

- `events`: after each commit, its events as `[id, type, conversation id]` (never the
  data) and the live-only events (typing) whole. Another instance, on hearing it, reads
  its store's log from its own cursor (gateway/eventlog.py: in order, holes waited for)
  and publishes the events it did not commit itself on its local bus: that wakes its
  dispatcher, outbox, webhook senders, deadlines and event streams exactly as a local
  commit does, and the streams read the events from the log as always.
- `deliver:*` (every instance) and `deliver:<instance>` (one): a reply for a customer
  whose socket another instance may hold (LOCAL_SESSIONS channels: web chat). The instance
  whose outbox took it writes to its own sockets, asks every other instance to write to
  theirs, and counts the answers: `sent` once a socket somewhere took it, or once every
  instance answered that it holds none (the visitor is away; history restores the reply on
  the next connect); otherwise it stays queued and is tried again.

Redis unreachable: announcements are dropped (nothing is lost: they are only hints), the
log is polled every `poll_interval` and the outbox poked as often, and a reply that no
socket here took waits in the outbox until Redis is back. `status` is then `degraded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from connectors.base import (
    Capability,
    Choice,
    Connector,
    DeliveryResult,
    Identity,
    OutboundMessage,
    Prompt,
)
from gateway.coord import Coordinator, Status
from gateway.coord.client import RedisClient
from gateway.eventlog import CursorExpired, LogReader
from gateway.events import EventBus
from gateway.model import Event, ephemeral
from gateway.store.base import Store

log = logging.getLogger("switchboard.coord")

# How often the log is read with nothing announced while Redis is fine (a safety net for an
# announcement lost in a reconnect), and how soon a reader held behind a hole looks again.
SAFETY_POLL = 5.0
GAP_POLL = 0.05
# How long an event found in the log but announced by nobody waits before it is published
# here (long enough for a commit of our own to come back from the store and say so).
SUSPECT_WAIT = 0.2
# How long the instance sending a reply waits for the others to say whether they wrote it.
ANSWER_TIMEOUT = 3.0


def encode_message(message: OutboundMessage) -> dict[str, Any]:
    data = dataclasses.asdict(message)
    data["attachments"] = []  # LOCAL_SESSIONS channels carry none (and bytes are no JSON)
    return data


def decode_message(data: dict[str, Any]) -> OutboundMessage:
    fields = dict(data)
    fields["to"] = Identity(**fields["to"])
    fields["attachments"] = []
    prompt = fields.get("prompt")
    if prompt is not None:
        prompt = dict(prompt)
        prompt["choices"] = [Choice(**c) for c in prompt["choices"]]
        fields["prompt"] = Prompt(**prompt)
    return OutboundMessage(**fields)


class _Asked:
    """One reply handed to the other instances: their answers as they come."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.answers: list[int] = []
        self.done = asyncio.Event()

    def check(self) -> None:
        if any(self.answers) or (self.expected is not None and len(self.answers) >= self.expected):
            self.done.set()


class RedisCoordinator(Coordinator):
    def __init__(
        self,
        client: RedisClient,
        bus: EventBus,
        store: Store,
        instance: str,
        connectors: Mapping[str, Connector],
        wake_outbox: Callable[[], None],
        poll_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.keys = client.keys
        self.bus = bus
        self.store = store
        self.instance = instance
        self.connectors = connectors
        self.wake_outbox = wake_outbox
        self.poll_interval = poll_interval
        self._all = self.keys.deliver_channel("*")
        self._mine = self.keys.deliver_channel(instance)
        self._local: set[int] = set()  # ids of events committed here, not yet passed
        self._announced: set[int] = set()  # ids the others announced, not yet passed
        # Events found in the log that nobody announced (an announcement missed, or Redis
        # down) and not known as ours: published on the next pass unless they turn out to
        # be ours (committed here, the commit's answer still on its way back).
        self._suspects: list[Event] = []
        self._relaying = False  # publishing others' events on the bus: not ours to announce
        self._pending: list[list[Any]] = []
        self._pending_live: list[dict[str, Any]] = []
        self._announce = asyncio.Event()
        self._relay = asyncio.Event()
        self._subscribed = False
        self._listening = asyncio.Event()
        self._asked: dict[str, _Asked] = {}
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.reader: LogReader | None = None
        bus.listen(self._on_local)
        client.on_change(self._on_health)

    @property
    def status(self) -> Status:
        return "ok" if self.client.healthy and self._subscribed else "degraded"

    @property
    def polling(self) -> bool:
        return not (self.client.healthy and self._subscribed)

    async def start(self) -> None:
        self.reader = LogReader(self.store, await self.store.last_event_id())
        await self.client.start()
        self._tasks = [
            asyncio.create_task(self._listen(), name="coord-listen"),
            asyncio.create_task(self._announcer(), name="coord-announce"),
            asyncio.create_task(self._relayer(), name="coord-relay"),
        ]
        # Serve at once, but hear the others before the loops need them (a second or so).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                if self.client.healthy:
                    await self._listening.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._announce.set()
        self._relay.set()
        tasks = [*self._tasks, *self._handlers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.client.stop()

    # --- announcing what was committed here ------------------------------------------------
    def _on_local(self, event: Event) -> None:
        if self._relaying:
            return
        if event.durable:
            self._local.add(event.id)
            self._pending.append([event.id, event.type, event.data.get("conversation_id")])
        else:
            self._pending_live.append({"type": event.type, "at": event.at, "data": event.data})
        self._announce.set()

    async def _announcer(self) -> None:
        while not self._stopping:
            await self._announce.wait()
            self._announce.clear()
            events, self._pending = self._pending, []
            live, self._pending_live = self._pending_live, []
            if not self.client.healthy or not (events or live):
                continue  # hints only: the others poll the log meanwhile
            body: dict[str, Any] = {"i": self.instance}
            if events:
                body["e"] = events
            if live:
                body["l"] = live
            try:
                await self.client.redis.publish(self.keys.events_channel, json.dumps(body))
            except (RedisError, OSError) as exc:
                self.client.report_failure(exc)
            except TypeError:
                log.warning("an event could not be announced (not JSON)")

    # --- hearing the others ----------------------------------------------------------------
    def _on_health(self, healthy: bool) -> None:
        self._relay.set()  # down: start polling now; back: catch up now

    async def _listen(self) -> None:
        while not self._stopping:
            if not self.client.healthy:
                await self.client.wait_healthy(self.poll_interval)
                continue
            pubsub = self.client.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events_channel, self._all, self._mine)
                self._subscribed = True
                self._listening.set()
                self._relay.set()  # whatever was committed while we were not listening
                while not self._stopping:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._on_message(str(msg["channel"]), str(msg["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.client.report_failure(exc)
            except Exception:
                log.exception("coordination listener failed; listening again")
                await asyncio.sleep(self.poll_interval)
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _on_message(self, channel: str, data: str) -> None:
        try:
            body = json.loads(data)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if channel == self.keys.events_channel:
            if body.get("i") == self.instance:
                return
            if body.get("e"):
                for item in body["e"]:
                    if isinstance(item, list) and item and isinstance(item[0], int):
                        self._announced.add(item[0])
                self._relay.set()
            live = [
                ephemeral(str(e["type"]), dict(e["data"]), float(e["at"]))
                for e in body.get("l") or ()
                if isinstance(e, dict) and isinstance(e.get("data"), dict)
            ]
            if live:
                self._publish_relayed(live)
        elif body.get("op") == "deliver" and body.get("from") != self.instance:
            self._spawn(self._deliver_here(body))
        elif body.get("op") == "typing" and body.get("from") != self.instance:
            self._spawn(self._typing_here(body))
        elif body.get("op") == "delivered":
            asked = self._asked.get(str(body.get("req")))
            if asked is not None:
                asked.answers.append(int(body.get("reached") or 0))
                asked.check()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _publish_relayed(self, events: list[Event]) -> None:
        self._relaying = True
        try:
            self.bus.publish(events)
        finally:
            self._relaying = False

    async def _relayer(self) -> None:
        """Read the log after the cursor and wake this instance for what others committed:
        on each announcement, and every `poll_interval` while Redis is unreachable."""
        failures = 0
        while not self._stopping:
            assert self.reader is not None
            if self.reader.holding:
                wait = GAP_POLL
            elif self._suspects:
                wait = SUSPECT_WAIT
            elif failures:
                wait = min(30.0, self.poll_interval * 2**failures)
            else:
                wait = self.poll_interval if self.polling else SAFETY_POLL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._relay.wait()
            self._relay.clear()
            if self._stopping:
                return
            try:
                await self._relay_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "coordination: reading the event log failed; retrying",
                        extra={"error": type(exc).__name__},
                    )
            if self.polling:
                self.wake_outbox()  # replies queued on other instances, leases run out

    async def _relay_once(self) -> None:
        reader = self.reader
        assert reader is not None
        out = [e for e in self._suspects if e.id not in self._local]
        self._suspects = []
        while True:
            try:
                batch = await reader.read(500)
            except CursorExpired as exc:
                reader.cursor = exc.oldest - 1
                continue
            for event in batch:
                if event.id in self._local:
                    continue
                if event.id in self._announced:
                    out.append(event)
                else:
                    self._suspects.append(event)
            if len(batch) < 500:
                break
        floor = min((e.id for e in self._suspects), default=reader.cursor + 1)
        if self._local:
            self._local = {i for i in self._local if i >= floor}
        if self._announced:
            self._announced = {i for i in self._announced if i > reader.cursor}
        if out:
            out.sort(key=lambda e: e.id)
            self._publish_relayed(out)
            if any(e.type.startswith("message.") for e in out):
                self.wake_outbox()

    # --- replies for sockets another instance may hold -------------------------------------
    async def send(
        self, channel: str, connector: Connector, message: OutboundMessage
    ) -> DeliveryResult:
        result = await connector.send(message)
        if Capability.LOCAL_SESSIONS not in connector.capabilities or result.status != "sent":
            return result
        here = result.reached or 0
        waiting = DeliveryResult.defer(
            "coordination unavailable: the visitor may be connected to another instance",
            retry_after=max(1.0, self.poll_interval),
        )
        if self.polling:
            return result if here else waiting
        req = uuid.uuid4().hex
        asked = self._asked[req] = _Asked()
        body = {
            "op": "deliver",
            "req": req,
            "from": self.instance,
            "channel": channel,
            "message": encode_message(message),
        }
        try:
            receivers = int(await self.client.redis.publish(self._all, json.dumps(body)))
            if here:
                return result  # written here; the others write to their tabs, if any
            asked.expected = max(0, receivers - 1)  # we listen on it too
            asked.check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    await asked.done.wait()
        except (RedisError, OSError) as exc:
            self.client.report_failure(exc)
            return result if here else waiting
        finally:
            self._asked.pop(req, None)
        total = here + sum(asked.answers)
        if total:
            return DeliveryResult.sent(result.provider_message_id, reached=total)
        if asked.expected is not None and len(asked.answers) >= asked.expected:
            return result  # no socket anywhere: the next connect shows it from history
        return DeliveryResult.defer(
            "an instance did not answer whether it holds the visitor's socket",
            retry_after=1.0,
        )

    async def _deliver_here(self, body: dict[str, Any]) -> None:
        reached = 0
        connector = self.connectors.get(str(body.get("channel")))
        if connector is not None and Capability.LOCAL_SESSIONS in connector.capabilities:
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT - 0.5):
                    result = await connector.send(decode_message(body["message"]))
                reached = (result.reached or 0) if result.status == "sent" else 0
            except Exception:
                log.exception("a reply handed over by another instance was not written")
        answer = {"op": "delivered", "req": body.get("req"), "reached": reached}
        with contextlib.suppress(RedisError, OSError):
            await self.client.redis.publish(
                self.keys.deliver_channel(str(body.get("from"))), json.dumps(answer)
            )

    async def typing(
        self, channel: str, connector: Connector, to: Identity, conversation_id: str, on: bool
    ) -> None:
        if Capability.LOCAL_SESSIONS not in connector.capabilities or self.polling:
            return
        body = {
            "op": "typing",
            "from": self.instance,
            "channel": channel,
            "to": [to.kind, to.address],
            "conversation_id": conversation_id,
            "typing": on,
        }
        try:
            await self.client.redis.publish(self._all, json.dumps(body))
        except (RedisError, OSError) as exc:
            self.client.report_failure(exc)

    async def _typing_here(self, body: dict[str, Any]) -> None:
        connector = self.connectors.get(str(body.get("channel")))
        if connector is None or Capability.TYPING not in connector.capabilities:
            return
        kind, address = body["to"]
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await connector.typing(
                    Identity(str(kind), str(address)),
                    str(body.get("conversation_id")),
                    bool(body.get("typing")),
                )


__all__ = ["RedisCoordinator", "decode_message", "encode_message"]
