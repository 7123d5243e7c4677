"""What the customer is told about time (issue 12), each at most once and loop-guarded like
the acknowledgement (gateway/autoreply.py): never in answer to a machine, and at most
`notices.max_per_contact` automatic messages per contact per `notices.window`.

- Out of hours: a new (or reopened) conversation whose queue is closed gets the closed
  reply ("back at 08:00") in the contact's language, instead of the acknowledgement.
- The long wait (`WaitNoticeSource`, a deadline source): on SMS, WhatsApp, Telegram and
  email, a conversation that has waited `notices.wait_after` of its queue's business time
  gets one message with its position and the estimated wait.
- The live wait queue (`WaitBoard`): channels that can show it (the chat widget,
  `Capability.WAIT_STATUS`) are told where each waiting customer stands — closed until ...,
  or position and estimated wait — whenever the queue moves, through `Connector.wait_status`.

The estimated wait is the position divided by the queue's recent handling rate
(assignments in the last `RATE_WINDOW`, counted from the committed events); unknown when
nothing was assigned in that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Mapping

from connectors.base import Capability, Connector, Identity, WaitStatus
from gateway.bots.config import BOT_QUEUE
from gateway.eventloop import stop_tasks
from gateway.i18n import Texts, preferred_language
from gateway.model import Conversation, Event, Message
from gateway.services import Services
from gateway.store.base import OutboundRequest, Store
from gateway.store.timekeeping import TimeStore, WaitingSeat
from gateway.time.notice_texts import NoticesConfig, language_of, opens_phrase
from router import MessageFacts, RoutingConfig, classify
from router.hours import add_business_seconds
from router.schedule import calendar, place

log = logging.getLogger("switchboard.notices")

RATE_WINDOW = 1800.0
# Events after which the live wait queue may have moved.
BOARD_EVENTS = frozenset(
    {
        "conversation.created",
        "conversation.assigned",
        "conversation.transferred",
        "conversation.resolved",
        "conversation.reopened",
        "agent.presence",
        "sla.breached",
    }
)


def closed_status(routing: RoutingConfig, queue: str, now: float) -> WaitStatus | None:
    """`closed` with when the queue opens (in its own zone), or None when it is open."""
    placed = place(routing, queue, now)
    if not placed.closed:
        return None
    cal = calendar(routing, placed.queue)
    if placed.opens_at is None or cal is None:
        return WaitStatus("closed")
    when = dt.datetime.fromtimestamp(placed.opens_at, cal.zone)
    today = dt.datetime.fromtimestamp(now, cal.zone).date()
    return WaitStatus(
        "closed",
        opens_at=placed.opens_at,
        opens_time=when.strftime("%H:%M"),
        opens_in_days=(when.date() - today).days,
        opens_weekday=when.weekday(),
    )


class RateMeter:
    """Assignments per queue in the last `RATE_WINDOW`, from the committed events this
    process sees (an estimate: it starts empty after a restart, "unknown" until then)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._seen: deque[tuple[float, str]] = deque()

    def on_event(self, event: Event) -> None:
        if event.type == "conversation.assigned" and isinstance(event.data.get("queue"), str):
            self._seen.append((event.at, event.data["queue"]))

    def counts(self) -> dict[str, int]:
        cutoff = self.clock() - RATE_WINDOW
        seen = self._seen
        while seen and seen[0][0] < cutoff:
            seen.popleft()
        out: dict[str, int] = {}
        for _, queue in seen:
            out[queue] = out.get(queue, 0) + 1
        return out


def estimated_wait(position: int, assigned_recently: int) -> float | None:
    if assigned_recently <= 0:
        return None
    return position * RATE_WINDOW / assigned_recently


class TimeNotices:
    def __init__(
        self,
        config: NoticesConfig,
        routing: RoutingConfig,
        store: Store,
        services: Services,
        connectors: Mapping[str, Connector],
        clock: Callable[[], float],
        texts: Texts,
    ) -> None:
        self.config = config
        self.texts = texts
        self.routing = routing
        assert isinstance(store, TimeStore), "the store keeps no notices"
        self.store = store
        self.times: TimeStore = store
        self.services = services
        self.connectors = connectors
        self.clock = clock
        self.rate = RateMeter(clock)  # fed with the bus's committed events by the gateway

    async def _may_send(self, contact_id: str, now: float) -> bool:
        cfg = self.config
        return await self.store.automatic_count(contact_id, now - cfg.window) < cfg.max_per_contact

    async def _language(self, contact_id: str) -> str:
        contact = await self.store.get_contact(contact_id)
        return language_of(preferred_language(contact.attributes))

    # --- out of hours -------------------------------------------------------------------
    async def on_inbound(self, conv: Conversation, message: Message) -> Message | None:
        """The closed reply for a new or reopened conversation whose queue is closed (the
        acknowledgement is not sent then); None when it is open or the reply is not due."""
        now = self.clock()
        placed = place(self.routing, conv.queue, now)
        if not placed.closed or not placed.reply:
            return None
        if message.automated:
            log.info("no closed notice: automated message", extra={"conversation": conv.id})
            return None
        kind = f"closed:{int(placed.opens_at or 0)}"
        if not await self.services.notice_once(self.times, conv.id, kind):
            return None
        if not await self._may_send(conv.contact_id, now):
            log.info("no closed notice: per-contact cap reached", extra={"conversation": conv.id})
            return None
        language = await self._language(conv.contact_id)
        cal = calendar(self.routing, conv.queue)
        opens = opens_phrase(self.texts, language, placed.opens_at, now, cal.zone if cal else None)
        text = self.config.closed_text(self.texts, language, opens)
        return await self.services.reply(
            OutboundRequest(
                conv.id, text, "bot", None, now, automatic=True, metadata={"notice": "closed"}
            )
        )

    def channel_queue(self, channel: str, kind: str) -> str:
        """The queue a channel's new conversations go to: the one the rules give a message
        with no text."""
        return classify(self.routing, MessageFacts(channel, kind, "", None, {})).queue

    def channel_status(self, channel: str, kind: str, now: float) -> WaitStatus | None:
        """Closed for the conversations a channel's new messages would open, or None when
        open."""
        return closed_status(self.routing, self.channel_queue(channel, kind), now)

    # --- the wait ------------------------------------------------------------------------
    async def _seats(self, kinds: list[str]) -> tuple[list[WaitingSeat], dict[str, int]]:
        seats = await self.times.waiting_seats(kinds, 5000)
        # Issue 15: a conversation a bot holds waits for no person (gateway/bots/stage.py).
        seats = [s for s in seats if s.queue != BOT_QUEUE]
        return seats, self.rate.counts() if seats else {}

    def _wait_due(self, seat: WaitingSeat) -> float | None:
        after = self.config.wait_after
        if after is None:
            return None
        return add_business_seconds(calendar(self.routing, seat.queue), seat.created_at, after)

    async def wait_candidates(self) -> list[tuple[WaitingSeat, float]]:
        seats, _ = await self._seats(self.config.wait_channel_kinds)
        done = await self.times.noticed([s.conversation_id for s in seats], "wait")
        out = []
        for seat in seats:
            if seat.conversation_id in done:
                continue
            due = self._wait_due(seat)
            if due is not None:
                out.append((seat, due))
        return out

    async def send_wait_notices(self, now: float) -> int:
        seats, rates = await self._seats(self.config.wait_channel_kinds)
        done = await self.times.noticed([s.conversation_id for s in seats], "wait")
        sent = 0
        for seat in seats:
            due = self._wait_due(seat)
            if seat.conversation_id in done or due is None or due > now:
                continue
            if not await self.services.notice_once(self.times, seat.conversation_id, "wait"):
                continue
            if seat.automated:
                log.info(
                    "no wait notice: automated message",
                    extra={"conversation": seat.conversation_id},
                )
                continue
            if not await self._may_send(seat.contact_id, now):
                log.info(
                    "no wait notice: per-contact cap reached",
                    extra={"conversation": seat.conversation_id},
                )
                continue
            language = language_of(preferred_language(seat.attributes))
            text = self.config.wait_text(
                self.texts,
                language,
                seat.position,
                estimated_wait(seat.position, rates.get(seat.queue, 0)),
            )
            await self.services.reply(
                OutboundRequest(
                    seat.conversation_id,
                    text,
                    "bot",
                    None,
                    now,
                    automatic=True,
                    metadata={"notice": "wait"},
                )
            )
            sent += 1
        return sent


class WaitNoticeSource:
    """The long-wait message as a deadline source: due when the first waiting conversation
    without it has waited `notices.wait_after` of business time."""

    name = "wait_notice"
    wake_on = frozenset({"conversation.created", "conversation.transferred"})

    def __init__(self, notices: TimeNotices) -> None:
        self.notices = notices

    async def next_due(self, now: float) -> float | None:
        dues = [due for _, due in await self.notices.wait_candidates()]
        return min(dues) if dues else None

    async def fire(self, now: float) -> None:
        await self.notices.send_wait_notices(now)


class WaitBoard:
    """Tells live channels where each waiting customer stands, whenever the queue moves
    (and every `interval` seconds, for the estimated wait and openings)."""

    def __init__(self, notices: TimeNotices, interval: float = 15.0, settle: float = 0.5) -> None:
        self.notices = notices
        self.interval = interval
        self.settle = settle
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # conversation → (channel, identity, what it was last told)
        self._shown: dict[str, tuple[str, Identity, WaitStatus]] = {}

    def on_event(self, event: Event) -> None:
        if event.type in BOARD_EVENTS:
            self._wake.set()

    def live_channels(self) -> dict[str, Connector]:
        return {
            name: c
            for name, c in self.notices.connectors.items()
            if Capability.WAIT_STATUS in c.capabilities
        }

    async def start(self) -> None:
        if self._task is None and self.live_channels():
            self._task = asyncio.create_task(self._run(), name="wait-board")

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_tasks([self._task], timeout, "wait board")
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            if self._stopping:
                break
            await asyncio.sleep(self.settle)  # let routing claim what it can first
            self._wake.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wait board refresh failed")

    async def refresh(self) -> int:
        """Tell each live customer what changed; returns how many were told."""
        live = self.live_channels()
        kinds = sorted({c.kind for c in live.values()})
        notices = self.notices
        now = notices.clock()
        seats, rates = await notices._seats(kinds)
        told = 0
        current: set[str] = set()
        for seat in seats:
            connector = live.get(seat.channel)
            if connector is None or seat.reply_kind is None:
                continue
            current.add(seat.conversation_id)
            status = closed_status(notices.routing, seat.queue, now) or WaitStatus(
                "waiting",
                position=seat.position,
                estimated_wait=estimated_wait(seat.position, rates.get(seat.queue, 0)),
            )
            shown = self._shown.get(seat.conversation_id)
            if shown is not None and shown[2] == status:
                continue
            to = Identity(seat.reply_kind, seat.reply_address or "")
            self._shown[seat.conversation_id] = (seat.channel, to, status)
            told += await self._tell(connector, to, seat.conversation_id, status)
        for conv_id in [c for c in self._shown if c not in current]:
            channel, to, _ = self._shown.pop(conv_id)
            connector = live.get(channel)
            if connector is not None:
                told += await self._tell(connector, to, conv_id, WaitStatus("served"))
        return told

    @staticmethod
    async def _tell(connector: Connector, to: Identity, conv_id: str, status: WaitStatus) -> int:
        try:
            await asyncio.wait_for(connector.wait_status(to, conv_id, status), 5)
        except Exception:
            log.warning("wait status not delivered", extra={"channel": connector.name})
            return 0
        return 1
