"""Inbound items the gateway cannot take: kept, shown, re-submittable — never retried silently.

Every item a provider hands over ends stored, stored as automated, or here. Two ways in:
- the core refuses a message (`RejectedMessage`: it fails validation), or the same message
  keeps failing inside the core (a bug) `max_failures` times: the message is kept and
  `submit` raises `Refused`, so the connector acknowledges the provider instead of having
  it redeliver for ever;
- a connector cannot read what it got (an unparseable mail, a payload its own code chokes
  on) and keeps it with `ctx.quarantine`.

An item stays `new` (the channel shows `degraded` on /readyz) until an admin re-submits it
(read again by its connector with the current code and config, then ingested as usual) or
dismisses it.
"""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson

from connectors.base import (
    Attachment,
    Connector,
    DeliveryReceipt,
    Identity,
    InboundMessage,
    RawItem,
    Refused,
    SubmitResult,
    Typing,
    Unavailable,
    VisitorLeft,
)
from connectors.http import without_nul
from gateway.ingest import ChannelInfo, RejectedMessage
from gateway.metrics import METRICS
from gateway.services import Services
from gateway.store.base import Conflict, QuarantinedItem, Store
from gateway.store.outage import StoreUnavailable

log = logging.getLogger("switchboard.quarantine")

# A normalised message the core refused, when the provider's own form (raw) is not known.
INBOUND_JSON = "application/vnd.switchboard.inbound+json"

Item = InboundMessage | DeliveryReceipt | Typing | VisitorLeft
Ingest = Callable[[ChannelInfo, Item], Awaitable[SubmitResult]]


def encode_inbound(msg: InboundMessage) -> bytes:
    """A normalised message as JSON (bytes as base64), for keeping and re-submitting."""

    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"$b64": base64.b64encode(value).decode()}
        if isinstance(value, datetime):
            return {"$dt": value.isoformat()}
        raise TypeError(type(value).__name__)

    data = asdict(msg)
    for att in data["attachments"]:
        if att.get("data") is not None:
            att["data"] = default(att["data"])
    if data.get("raw") is not None:
        data["raw"] = default(data["raw"])
    if data.get("sent_at") is not None:
        data["sent_at"] = default(data["sent_at"])
    return orjson.dumps(data, default=default)


def decode_inbound(body: bytes) -> InboundMessage:
    data = orjson.loads(body)

    def unwrap(value: Any) -> Any:
        if isinstance(value, dict) and "$b64" in value:
            return base64.b64decode(value["$b64"])
        if isinstance(value, dict) and "$dt" in value:
            return datetime.fromisoformat(value["$dt"])
        return value

    data["sender"] = Identity(**data["sender"])
    data["extra_identities"] = [Identity(**i) for i in data.get("extra_identities", [])]
    data["attachments"] = [
        Attachment(**{**a, "data": unwrap(a.get("data"))}) for a in data.get("attachments", [])
    ]
    data["raw"] = unwrap(data.get("raw"))
    data["sent_at"] = unwrap(data.get("sent_at"))
    return InboundMessage(**data)


def _key(item: InboundMessage | DeliveryReceipt) -> str:
    if isinstance(item, InboundMessage):
        return f"m:{item.external_id}"
    return f"r:{item.provider_message_id}:{item.status}"


class QuarantineService:
    def __init__(
        self,
        store: Store,
        services: Services,
        clock: Callable[[], float],
        connectors: Mapping[str, Connector],
        ingest: Ingest,
        max_failures: int = 3,
    ) -> None:
        self.store = store
        self.services = services
        self.clock = clock
        self.connectors = connectors
        self.ingest = ingest
        self.max_failures = max_failures
        # (channel, item key) -> consecutive failures; bounded, oldest forgotten first.
        self._failures: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.channels: dict[str, ChannelInfo] = {}

    # --- keeping ---------------------------------------------------------------------------
    async def keep(self, channel: str, item: RawItem, reason: str) -> str:
        """Store an item as it came; returns its id. Raises `Unavailable` when even that
        fails (the store is down): the connector must then not acknowledge."""
        try:
            kept = await self.services.quarantine_add(
                channel,
                item.content_type,
                item.data,
                without_nul(reason)[:2000],
                external_id=without_nul(item.external_id),
                metadata=without_nul(item.metadata),
            )
        except Exception as exc:
            log.exception("could not quarantine an item", extra={"channel": channel})
            raise Unavailable(f"the item could not be kept: {type(exc).__name__}") from exc
        METRICS.quarantined.labels(channel).inc()
        await self.refresh_gauge()
        log.warning(
            "inbound item quarantined",
            extra={"channel": channel, "quarantine_id": kept.id, "reason": kept.reason},
        )
        return kept.id

    async def keep_message(self, channel: str, msg: InboundMessage, reason: str) -> str:
        """Keep a message the core refused: the provider's own form when the connector
        gave it (re-read by the connector on retry), else the normalised message."""
        metadata = {"sender": f"{msg.sender.kind}:{msg.sender.address}"[:300]}
        if msg.raw is not None:
            raw = RawItem(msg.raw_type, msg.raw, msg.external_id, metadata)
        else:
            raw = RawItem(INBOUND_JSON, encode_inbound(msg), msg.external_id, metadata)
        return await self.keep(channel, raw, reason)

    # --- the submit every connector gets ---------------------------------------------------
    def submitter(
        self, info: ChannelInfo, synchronous: bool = False
    ) -> Callable[[Item], Awaitable[SubmitResult]]:
        """`ctx.submit` for one channel. `synchronous`: the sender sees the error at once
        (the `api` channel answers 422), so a refused message is not kept."""
        self.channels[info.name] = info

        async def submit(item: Item) -> SubmitResult:
            if isinstance(item, Typing | VisitorLeft):
                try:
                    return await self.ingest(info, item)
                except StoreUnavailable as exc:
                    raise Unavailable(str(exc)) from exc
            key = (info.name, _key(item))
            try:
                result = await self.ingest(info, item)
            except StoreUnavailable as exc:
                # Not the item's fault: nothing counted, nothing kept; the connector leaves
                # it with the provider (503, mail unseen, offset kept) to be taken later.
                raise Unavailable(str(exc)) from exc
            except RejectedMessage as exc:
                self._failures.pop(key, None)
                if synchronous or not isinstance(item, InboundMessage):
                    raise Refused(str(exc)) from exc
                qid = await self.keep_message(info.name, item, f"refused: {exc}")
                raise Refused(str(exc), qid) from exc
            except (Refused, Unavailable):
                raise
            except Exception as exc:
                failures = self._failures.pop(key, 0) + 1
                if failures < self.max_failures or not isinstance(item, InboundMessage):
                    self._failures[key] = failures
                    while len(self._failures) > 10_000:
                        self._failures.popitem(last=False)
                    raise
                reason = f"failed {failures} times in the gateway: {type(exc).__name__}: {exc}"
                qid = await self.keep_message(info.name, item, reason)
                raise Refused(reason, qid) from exc
            self._failures.pop(key, None)
            return result

        return submit

    # --- review ----------------------------------------------------------------------------
    async def retry(self, item_id: str) -> QuarantinedItem:
        """Read the item again with the current code and config and ingest it. On success
        it is `retried` (pointing at its message); otherwise it stays `new` with the reason."""
        item, data = await self.store.quarantine_get(item_id)
        if item.status != "new":
            raise Conflict(f"quarantined item {item_id} is {item.status}, not new")
        connector = self.connectors.get(item.channel)
        info = self.channels.get(item.channel)
        if connector is None or info is None:
            raise Conflict(f"channel {item.channel} is not configured or not running")
        message_id: str | None = None
        try:
            if item.content_type == INBOUND_JSON:
                parsed: InboundMessage | DeliveryReceipt = decode_inbound(data)
            else:
                parsed = await connector.parse_raw(
                    RawItem(item.content_type, data, item.external_id, item.metadata)
                )
            result = await self.ingest(info, parsed)
            message_id = result.message_id
        except NotImplementedError as exc:
            raise Conflict(str(exc)) from None
        except Exception as exc:
            reason = f"retry failed: {type(exc).__name__}: {exc}"
            return await self.services.quarantine_settle(item_id, "new", reason=reason[:2000])
        settled = await self.services.quarantine_settle(item_id, "retried", message_id=message_id)
        await self.refresh_gauge()
        log.info("quarantined item re-submitted", extra={"quarantine_id": item_id})
        return settled

    async def dismiss(self, item_id: str) -> QuarantinedItem:
        item, _ = await self.store.quarantine_get(item_id)
        if item.status == "retried":
            raise Conflict(f"quarantined item {item_id} was already re-submitted")
        settled = await self.services.quarantine_settle(item_id, "dismissed")
        await self.refresh_gauge()
        return settled

    async def refresh_gauge(self) -> dict[str, int]:
        counts = await self.store.quarantine_unreviewed()
        for name in set(self.channels) | set(counts):
            METRICS.quarantine_unreviewed.labels(name).set(counts.get(name, 0))
        return counts
