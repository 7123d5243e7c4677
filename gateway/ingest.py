"""The ingest pipeline behind every connector's `submit()`.

normalise identity → (one unit of work, gateway/services.py: the store, atomically, dedupes
on (channel, external id), resolves the contact, threads or opens a conversation, persists,
appends events → publish → wake routing).
The caller gets its answer only after the message is durable.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from connectors.base import (
    Attachment,
    DeliveryReceipt,
    InboundMessage,
    SubmitResult,
    Typing,
    VisitorLeft,
)
from connectors.http import without_nul
from gateway.autoreply import Acknowledger
from gateway.identity import normalize
from gateway.metrics import METRICS
from gateway.model import ACTIVE_STATUSES, ephemeral
from gateway.services import Services
from gateway.store.base import Classification, ConversationFilter, IngestRequest, NotFound, Store
from router import PRIORITY_RANK, MessageFacts, RoutingConfig, classify
from router.reasons import Reason
from router.schedule import place

if TYPE_CHECKING:
    from gateway.bots.stage import WebhookBotStage
    from gateway.kb.bot import KbBot
    from gateway.time.notices import TimeNotices

log = logging.getLogger("switchboard.ingest")
# A follow-up (the portal) reopens a resolved conversation of any age (a century, in seconds).
FOLLOW_UP_WINDOW = 100 * 365 * 86400.0


class RejectedMessage(ValueError):
    """Input a connector should answer with a 4xx: it is not stored."""


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    name: str
    kind: str


def blob_id(data: bytes) -> str:
    """Content-addressed: the same attachment twice is stored once."""
    return "b_" + hashlib.sha256(data).hexdigest()[:40]


def _question(msg: InboundMessage) -> str:
    """What the knowledge-base bot reads: an email's subject and its text."""
    return f"{msg.subject}\n{msg.text}" if msg.subject else msg.text


class Ingestor:
    def __init__(
        self,
        store: Store,
        services: Services,
        routing: RoutingConfig,
        reopen_window: float,
        clock: Callable[[], float],
        max_text_chars: int = 100_000,
        acknowledger: Acknowledger | None = None,
    ) -> None:
        self.acknowledger = acknowledger
        self.store = store
        self.services = services
        self.routing = routing
        self.reopen_window = reopen_window
        self.clock = clock
        self.max_text_chars = max_text_chars
        # Issue 12: the closed reply out of hours (set by the gateway).
        self.notices: TimeNotices | None = None
        # Takes a message before it is ingested when it answers a survey (gateway/surveys/):
        # recorded there, it opens, reopens and routes nothing. None: ingest it.
        self.intercept: (
            Callable[[ChannelInfo, InboundMessage], Awaitable[SubmitResult | None]] | None
        ) = None
        # Issue 15: the knowledge-base bot stage (gateway/kb/bot.py), set by the gateway.
        self.bot: KbBot | None = None
        # Issue 15: the external bot stage (gateway/bots/stage.py), set by the gateway.
        self.webhook_bot: WebhookBotStage | None = None
        # Issue 15: names the knowledge-base articles a message says the widget suggested
        # (`kb_suggestions`: slug and language) with their titles, for the agent.
        self.title_articles: Callable[[list[dict[str, Any]]], None] | None = None

    def classifier(
        self, channel: ChannelInfo, msg: InboundMessage
    ) -> Callable[[dict[str, str]], Classification]:
        def run(attributes: dict[str, str]) -> Classification:
            facts = MessageFacts(channel.name, channel.kind, msg.text, msg.subject, attributes)
            c = classify(self.routing, facts)
            queue, reasons = c.queue, c.reasons
            invited = msg.metadata.get("invitation")
            if isinstance(invited, str):  # issue 15: the answer to a widget invitation
                reasons = [Reason("core.invited", rule=invited), *reasons]
            ruled = Classification(
                queue,
                PRIORITY_RANK[c.priority],
                c.required_skills,
                c.tags,
                c.rule,
                reasons,
                c.rules,
            )
            if self.bot is not None:  # `bot: knowledge_base`: held while the bot answers
                held = self.bot.hold(ruled, _question(msg), msg.automated, attributes)
                if held.queue != queue:
                    return held
            if self.webhook_bot is not None:  # `bot: {webhook: NAME}`: held for the bot
                held = self.webhook_bot.hold(ruled, _question(msg), msg.automated)
                if held.queue != queue:
                    return held
            if self.routing.hours:  # a closed queue: park, or overflow to an open one
                placed = place(self.routing, queue, self.clock())
                if placed.reason is not None:
                    return replace(ruled, queue=placed.queue, reasons=[*reasons, placed.reason])
            return ruled

        return run

    async def submit(
        self,
        channel: ChannelInfo,
        item: InboundMessage | DeliveryReceipt | Typing | VisitorLeft,
        *,
        follow_up: bool = False,
    ) -> SubmitResult:
        """`follow_up`: the customer chose the conversation (the portal, gateway/portal/:
        the message carries its thread token): no survey takes it, and a resolved
        conversation reopens however long ago it was resolved."""
        # Every channel passes here: a NUL in what a customer sent (text, subject, name,
        # ids, attachment names, metadata) is dropped, never stored (PostgreSQL refuses it).
        item = without_nul(item)
        if isinstance(item, Typing):
            return await self._typing(channel, item)
        if isinstance(item, VisitorLeft):  # KPIs (issue 13): abandonment
            events = await self.services.visitor_left(channel.name, normalize(item.sender), item.at)
            return SubmitResult(events[0].data["conversation_id"] if events else None, None)
        if isinstance(item, DeliveryReceipt):
            events = await self.services.apply_receipt(
                channel.name, item.provider_message_id, item.status, item.reason
            )
            return SubmitResult(None, None, duplicate=not events)
        return await self._message(channel, item, follow_up)

    async def _message(
        self, channel: ChannelInfo, msg: InboundMessage, follow_up: bool = False
    ) -> SubmitResult:
        if not msg.external_id or len(msg.external_id) > 512:
            raise RejectedMessage("external_id must be 1 to 512 characters")
        if len(msg.text) > self.max_text_chars:
            # Stored cut and marked (the API shows `truncated` and `original_length`); the
            # whole text stays downloadable: the raw message, else a text attachment.
            msg.metadata.update(truncated=True, original_length=len(msg.text))
            if msg.raw is None:
                full = msg.text.encode("utf-8", "replace")
                msg.attachments.append(Attachment("full-text.txt", "text/plain", len(full), full))
            msg.text = msg.text[: self.max_text_chars]
        try:
            msg.sender = normalize(msg.sender)
            msg.extra_identities = [normalize(i) for i in msg.extra_identities]
        except ValueError as exc:
            raise RejectedMessage(str(exc)) from exc
        suggested = msg.metadata.get("kb_suggestions")
        if self.title_articles is not None and isinstance(suggested, list):
            self.title_articles(suggested)
        if self.intercept is not None and not follow_up:
            answered = await self.intercept(channel, msg)
            if answered is not None:
                return answered
        blobs: dict[str, tuple[str, bytes]] = {}
        attachments: list[dict[str, Any]] = []
        for att in msg.attachments:
            attachments.append(self._attachment(att, blobs))
        raw_blob = None
        if msg.raw is not None:
            raw_blob = blob_id(msg.raw)
            blobs[raw_blob] = (msg.raw_type, msg.raw)
        outcome = await self.services.ingest(
            IngestRequest(
                channel=channel.name,
                channel_kind=channel.kind,
                message=msg,
                classify=self.classifier(channel, msg),
                now=self.clock(),
                reopen_window=FOLLOW_UP_WINDOW if follow_up else self.reopen_window,
                blobs=blobs,
                attachments=attachments,
                raw_blob=raw_blob,
            )
        )
        conv, message = outcome.conversation, outcome.message
        if outcome.duplicate:
            METRICS.duplicates.labels(channel.name).inc()
        else:
            METRICS.messages_in.labels(channel.name, channel.kind).inc()
            closed_reply = None
            by_bot = False
            if self.bot is not None:
                try:
                    by_bot = await self.bot.after_ingest(outcome, _question(msg))
                except Exception:  # the customer's message is stored; never fail it
                    log.exception(
                        "knowledge-base bot failed", extra={"conversation": conv and conv.id}
                    )
            if self.webhook_bot is not None and not by_bot:
                by_bot = self.webhook_bot.after_ingest(outcome, _question(msg))
            if (
                not by_bot
                and (outcome.created or outcome.reopened)
                and self.notices is not None
                and conv is not None
                and message is not None
            ):
                try:
                    closed_reply = await self.notices.on_inbound(conv, message)
                except Exception:  # the customer's message is stored; never fail it
                    log.exception("closed notice failed", extra={"conversation": conv.id})
            if outcome.created:
                METRICS.conversations_created.labels(channel.name, conv.queue if conv else "").inc()
                if (
                    closed_reply is None
                    and not by_bot
                    and self.acknowledger is not None
                    and conv is not None
                    and message is not None
                ):
                    try:
                        await self.acknowledger.on_new_conversation(conv, message, msg.sender_name)
                    except Exception:  # the customer's message is stored; never fail it
                        log.exception("acknowledgement failed", extra={"conversation": conv.id})
        log.debug(
            "ingested",
            extra={
                "channel": channel.name,
                "conversation": conv.id if conv else None,
                "duplicate": outcome.duplicate,
            },
        )
        return SubmitResult(
            conv.id if conv else None, message.id if message else None, outcome.duplicate
        )

    async def _typing(self, channel: ChannelInfo, item: Typing) -> SubmitResult:
        """Publish a live `conversation.typing` event; nothing is stored."""
        try:
            contact = await self.store.find_contact(normalize(item.sender))
        except (NotFound, ValueError):
            return SubmitResult(None, None)
        rows, _ = await self.store.list_conversations(
            ConversationFilter(contact_id=contact.id, limit=5)
        )
        conv = next((c for c in rows if c.status in ACTIVE_STATUSES), None)
        if conv is None:
            return SubmitResult(None, None)
        self.services.announce(
            [
                ephemeral(
                    "conversation.typing",
                    {"conversation_id": conv.id, "from": "contact", "typing": item.typing},
                    self.clock(),
                )
            ]
        )
        return SubmitResult(conv.id, None)

    @staticmethod
    def _attachment(att: Attachment, blobs: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        # The name and type are the customer's: agents download the file under that name
        # and the type goes back out as a Content-Type header. No NUL, no line breaks.
        controls = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+"
        name = " ".join(re.sub(controls, " ", att.name or "").split()) or "attachment"
        content_type = (att.content_type or "").strip()
        if not re.fullmatch(r"[\x21-\x7e]+/[\x20-\x7e]{1,200}", content_type):
            content_type = "application/octet-stream"
        meta: dict[str, Any] = {
            "name": name,
            "content_type": content_type,
            "size": att.size,
        }
        if att.url:
            meta["url"] = att.url
        if att.data is not None:
            bid = blob_id(att.data)
            blobs[bid] = (content_type, att.data)
            meta["blob"] = bid
        return meta
