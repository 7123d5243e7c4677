"""The connector contract: the only thing a channel connector depends on.

A connector speaks one provider's protocol. Inbound, it turns what the provider sends into
`InboundMessage`s (or `DeliveryReceipt`s) and hands them to `ctx.submit`, acknowledging the
provider only after `submit` returned (the message is durable by then). What it cannot
take it keeps with `ctx.quarantine` and then acknowledges; `submit` raising `Refused` means
the core has quarantined it; any other exception means "not taken, try again later".
Outbound, the core's
outbox calls `send()`; expected provider failures come back as a `DeliveryResult`, never as
an exception. A connector knows nothing about routing or storage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from connectors.ratelimit import LocalRateLimiter, RateLimiter


class Capability(StrEnum):
    TEXT = "text"
    HTML = "html"
    ATTACHMENTS = "attachments"
    TYPING = "typing"
    READ_RECEIPTS = "read_receipts"
    SUBJECT = "subject"
    # Shows the customer live where they stand (closed, queue position): `wait_status`.
    WAIT_STATUS = "wait_status"
    # The customer is reached through connections this process holds (a chat socket): with
    # several gateway instances, a reply must be written by the instance that holds them
    # (`DeliveryResult.reached` says how many this one wrote to).
    LOCAL_SESSIONS = "local_sessions"


class NotReady(Exception):
    """`start()` could not reach the provider yet; the core retries with backoff."""


class AuthFailed(Exception):
    """The provider refused our credentials; the channel is stopped and reported on /readyz."""


class Refused(Exception):
    """Raised by `ctx.submit`: the core will never take this item as it is (it failed
    validation, or kept failing). It is already kept in quarantine (`quarantine_id`), where
    an admin can see, download and re-submit it, so the connector acknowledges the provider
    (marks the mail, answers the webhook 2xx, advances the offset): asking again would loop.
    """

    def __init__(self, reason: str, quarantine_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.quarantine_id = quarantine_id


class Unavailable(Exception):
    """Raised by `ctx.submit`: the core cannot take anything right now (the store is down).
    Do not acknowledge: the provider, or the connector's own poll, tries again later."""


@dataclass(slots=True)
class RawItem:
    """Something a provider handed over, exactly as it came: what a connector quarantines
    when it cannot turn it into a message, and what `Connector.parse_raw` reads again."""

    content_type: str
    data: bytes
    # The provider's id of the item, when it could be read (Message-ID, MessageSid, update id).
    external_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ConnectorSettings(BaseModel):
    """Base for each connector's settings model: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Identity:
    """How a channel knows a customer: `(kind, address)`, e.g. `("email", "a@b.c")`."""

    kind: str
    address: str


@dataclass(slots=True)
class Attachment:
    name: str
    content_type: str
    size: int
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """One fixed answer to a `Prompt`: `value` comes back, `label` is shown."""

    value: str
    label: str
    # A one-click link that records this answer (email, where nothing can be clicked
    # back into the conversation).
    url: str | None = None


@dataclass(slots=True)
class Prompt:
    """A question with fixed answers on an outbound message (a survey). Each connector
    renders it as its channel can: buttons (web chat), an inline keyboard (Telegram), links
    (email); a channel that can do none of these sends the text alone, which says how to
    answer in words. The answer comes back as an `InboundMessage` with `answer` set, or as
    plain text the core recognises."""

    id: str
    choices: list[Choice]
    # Where a free-text comment can be left (email), if any.
    comment_url: str | None = None
    # Where the customer says "no more of these" with one click (email), if any.
    optout_url: str | None = None
    # Whether the channel should offer a comment box after the choice (web chat).
    comment: bool = False
    # A provider template to use when free text cannot be sent (WhatsApp outside the
    # 24-hour window): {"content_sid": ..., "variables": {...}}.
    template: dict[str, Any] | None = None
    # Short texts in the customer's language a channel may show with its controls:
    # `comment_prompt`, `comment_submit`, `thanks`.
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Answer:
    """A customer's answer to a `Prompt`, as a channel's own control returned it (a button,
    a callback query): the prompt's id, the chosen value and/or a comment."""

    prompt_id: str
    value: str | None = None
    comment: str | None = None


@dataclass(slots=True)
class InboundMessage:
    """A customer's message, normalised by the connector that received it."""

    external_id: str
    sender: Identity
    text: str
    sender_name: str | None = None
    html: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    contact_attributes: dict[str, str] = field(default_factory=dict)
    # Provider ids this message answers (email: In-Reply-To and References).
    thread_refs: list[str] = field(default_factory=list)
    # A conversation token we put in our own outgoing messages (email plus-address, tag).
    thread_token: str | None = None
    # The provider's own id of this message, stored for threading (email Message-ID).
    provider_message_id: str | None = None
    # True when the message was sent by a machine (auto-reply, bounce, bulk): never answer
    # it automatically.
    automated: bool = False
    sent_at: datetime | None = None
    # The message as the provider sent it (an email's RFC 5322 bytes), kept retrievable,
    # and its media type.
    raw: bytes | None = None
    raw_type: str = "application/octet-stream"
    # The external id of an earlier message that this one edits (Telegram edits).
    edits: str | None = None
    # Further identities the customer typed but the channel cannot vouch for (a web chat
    # pre-chat email): kept as claims on the sender's own contact, never used to find a
    # contact or conversation. `ctx.verify_start`/`verify_confirm` prove one.
    extra_identities: list[Identity] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Set when the message answers a `Prompt` through the channel's own control.
    answer: Answer | None = None


@dataclass(slots=True)
class DeliveryReceipt:
    """A provider's word on one of our outbound messages."""

    provider_message_id: str
    status: Literal["delivered", "read", "failed"]
    reason: str | None = None
    at: datetime | None = None


@dataclass(slots=True)
class Typing:
    """The customer started or stopped typing; published live, never stored."""

    sender: Identity
    typing: bool = True


@dataclass(slots=True)
class VisitorLeft:
    """A live-chat visitor left (e.g. the widget's last socket closed and stayed closed).
    The core records an abandonment when no agent had replied by `at` (epoch seconds)."""

    sender: Identity
    at: float


@dataclass(slots=True)
class SubmitResult:
    conversation_id: str | None
    message_id: str | None
    duplicate: bool = False


@dataclass(slots=True)
class OutboundMessage:
    """A message to a customer, persisted by the outbox before `send()` is called."""

    id: str
    conversation_id: str
    to: Identity
    text: str
    html: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    # Provider ids of the conversation's messages, oldest first (email References chain).
    thread_refs: list[str] = field(default_factory=list)
    thread_token: str | None = None
    sender_name: str | None = None
    automatic: bool = False
    attempt: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    # A question with fixed answers, rendered by the connector as its channel can.
    prompt: Prompt | None = None


@dataclass(slots=True)
class DeliveryResult:
    status: Literal["sent", "retry", "failed"]
    provider_message_id: str | None = None
    retry_after: float | None = None
    reason: str | None = None
    # LOCAL_SESSIONS channels: how many open sessions of this process the message was
    # written to (0: none here; the core may hand it to the instance holding them).
    reached: int | None = None
    # A retry that is no attempt of the channel (the core could not yet reach the instance
    # that must write it): it does not count against `max_attempts`.
    deferred: bool = False

    @classmethod
    def sent(
        cls, provider_message_id: str | None = None, reached: int | None = None
    ) -> DeliveryResult:
        return cls("sent", provider_message_id=provider_message_id, reached=reached)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retry", reason=reason, retry_after=retry_after)

    @classmethod
    def defer(cls, reason: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retry", reason=reason, retry_after=retry_after, deferred=True)

    @classmethod
    def failed(cls, reason: str) -> DeliveryResult:
        return cls("failed", reason=reason)


class KeyValue(Protocol):
    """A small namespaced, persistent key-value store with leases, one per channel."""

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def lease(self, key: str, holder: str, ttl: float) -> bool:
        """Take or renew a lease; True while `holder` owns it."""
        ...


class LeaseLost(Exception):
    """The channel's lease is gone (a renewal failed, or a newer holder has written): stop
    the work and `acquire()` again."""


class Lease(Protocol):
    """A named right to do one job alone across the gateway's instances (poll one mailbox,
    one bot). The core renews it while held; `set` writes to the channel's key-value store
    only while this holding is the newest (a fencing token checked in the store)."""

    @property
    def held(self) -> bool: ...

    async def acquire(self) -> None:
        """Wait until held (a dead holder's lease is taken over within about 10 s)."""
        ...

    async def release(self) -> None: ...

    async def wait_lost(self) -> None:
        """Return once the lease is no longer held."""
        ...

    async def set(self, key: str, value: str) -> None:
        """`ctx.kv.set`, fenced: raises LeaseLost (nothing written) when not the holder."""
        ...


class LocalLease:
    """One instance: always held; writes are plain `kv.set`."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._released = asyncio.Event()

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    async def acquire(self) -> None:
        self._released.clear()

    async def release(self) -> None:
        self._released.set()

    async def wait_lost(self) -> None:
        await self._released.wait()

    async def set(self, key: str, value: str) -> None:
        await self._kv.set(key, value)


LeaseFactory = Callable[[str], Lease]


async def acquire_unless(lease: Lease, stopping: asyncio.Event) -> bool:
    """Wait for `lease` or for `stopping`, whichever comes first; True when held."""
    if lease.held:
        return True
    waiter = asyncio.ensure_future(lease.acquire())
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stopper):
            task.cancel()
        await asyncio.gather(waiter, stopper, return_exceptions=True)
    return lease.held and not stopping.is_set()


@dataclass(slots=True)
class VerificationResult:
    """The core's answer about proving a claimed address (a chat's pre-chat email).

    `sent` (a code went out), `verified` (the code was right: the address is linked),
    `wrong_code` (`attempts_left`), `locked` (too many wrong codes; `retry_after`), `expired`,
    `none` (no code pending), `rate_limited` (`retry_after`), `unavailable` (no channel to
    send a code through)."""

    status: Literal[
        "sent", "verified", "wrong_code", "locked", "expired", "none", "rate_limited", "unavailable"
    ]
    attempts_left: int | None = None
    retry_after: float | None = None
    expires_in: float | None = None
    contact_id: str | None = None


Submit = Callable[
    [InboundMessage | DeliveryReceipt | Typing | VisitorLeft], Awaitable[SubmitResult]
]
# Keep an item the connector cannot take, with the reason; returns the quarantine id. Once it
# returned the item is durable and the connector acknowledges the provider. This is how a
# connector says "refuse this, permanently"; any exception it lets out means "try again".
Quarantine = Callable[[RawItem, str], Awaitable[str]]
# The customer's recent messages, both directions, oldest first, as the API renders them
# (`id`, `direction`, `text`, `status`, `created_at`, `external_id`, `sender` ...).
History = Callable[[Identity, int], Awaitable[list[dict[str, Any]]]]
# What the channel may tell a customer before they write: {"agents_online": int} and, when
# the business is closed for this channel's new conversations, {"status": WaitStatus}.
Availability = Callable[[], Awaitable[dict[str, Any]]]
# Mail a one-time code to an address the customer (first identity) claims (second), in a
# language ("de"/"en"), through an email channel (the named one, else the first).
VerifyStart = Callable[[Identity, Identity, str, str | None], Awaitable[VerificationResult]]
# Check the code the customer typed: the claimed address is linked only when it is right.
VerifyConfirm = Callable[[Identity, str], Awaitable[VerificationResult]]


async def _no_quarantine(item: RawItem, reason: str) -> str:
    raise Unavailable("this gateway keeps no quarantine")


async def _no_history(identity: Identity, limit: int) -> list[dict[str, Any]]:
    return []


async def _no_availability() -> dict[str, Any]:
    return {"agents_online": 0}


async def _no_verify_start(
    claimant: Identity, claimed: Identity, language: str, via: str | None
) -> VerificationResult:
    return VerificationResult("unavailable")


async def _no_verify_confirm(claimant: Identity, code: str) -> VerificationResult:
    return VerificationResult("none")


RouteAdder = Callable[[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], None]


@dataclass(frozen=True, slots=True)
class WaitStatus:
    """Where a customer stands, for a channel that can show it live (the chat widget).

    `state`: `closed` (nobody works now; back at `opens_time`, local to the business, in
    `opens_in_days` days, on weekday `opens_weekday` 0=Monday), `waiting` (nobody free yet:
    `position` 1 = next, `estimated_wait` seconds from the recent handling rate, None when
    unknown) or `served` (an agent has it, or nothing waits). The connector words it in the
    customer's language; it knows nothing of queues.
    """

    state: Literal["closed", "waiting", "served"]
    opens_at: float | None = None
    opens_time: str | None = None
    opens_in_days: int | None = None
    opens_weekday: int | None = None
    position: int | None = None
    estimated_wait: float | None = None

    def to_frame(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "opens_at": self.opens_at,
            "opens_time": self.opens_time,
            "opens_in_days": self.opens_in_days,
            "opens_weekday": self.opens_weekday,
            "position": self.position,
            "estimated_wait": self.estimated_wait,
        }


# Issue 15: (text typed, language) → {"items": [{slug, language, title, url, snippet:
# [[text, marked], ...]}], "texts": {heading, question, yes, no, glad}}.
Suggest = Callable[[str, str], Awaitable[dict[str, Any]]]
# (the visitor, "shown" | "clicked" | "answered", {"items": [{slug, language}], "helpful"?})
SuggestionEvent = Callable[[Identity, str, dict[str, Any]], Awaitable[None]]


async def _no_suggestion_event(visitor: Identity, event: str, data: dict[str, Any]) -> None:
    return None


# A proactive chat invitation (a configured one's name) was `shown` to a visitor or
# `answered` by the visitor's first message: counted by the core (Prometheus).
InvitationEvent = Callable[[str, Literal["shown", "answered"]], None]


def _no_invitation_event(invitation: str, event: Literal["shown", "answered"]) -> None:
    return None


# Issue 15: (the customer, language) → {"url", "label"}: a link to the customer portal for
# the contact holding that identity, and the text to show it with; None: no contact yet.
PortalLink = Callable[[Identity, str], Awaitable[dict[str, str] | None]]


@dataclass(slots=True)
class ConnectorContext:
    """What the core gives a connector."""

    submit: Submit
    http: aiohttp.ClientSession
    add_route: RouteAdder
    kv: KeyValue
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    # The gateway's public base URL, for webhook registration and signature checks.
    public_url: str = ""
    max_body_bytes: int = 1 << 20
    history: History = _no_history
    availability: Availability = _no_availability
    quarantine: Quarantine = _no_quarantine
    verify_start: VerifyStart = _no_verify_start
    verify_confirm: VerifyConfirm = _no_verify_confirm
    # The core's clock (seconds since the epoch); tests inject one.
    clock: Callable[[], float] = time.time
    # Issue 15: knowledge-base articles for what a visitor is typing (None: the core has
    # no knowledge base), and what became of them (shown, clicked, answered).
    suggest: Suggest | None = None
    suggestion_event: SuggestionEvent = _no_suggestion_event
    # Issue 15: a link to the customer portal (None: the portal is off).
    portal_link: PortalLink | None = None
    # Widget invitations shown and answered, for the core's counters.
    invitation_event: InvitationEvent = _no_invitation_event
    # Leases shared by the gateway's instances (None: one instance, always held).
    leases: LeaseFactory | None = None
    # Rate limits shared by the gateway's instances (None: kept in this process).
    rates: RateLimiter | None = None

    def rate_limiter(self) -> RateLimiter:
        """The channel's rate limiter: shared across instances when the core has Redis."""
        return self.rates if self.rates is not None else LocalRateLimiter()

    def lease(self, name: str) -> Lease:
        """The lease `name` of this channel (e.g. one per polled mailbox)."""
        return self.leases(name) if self.leases is not None else LocalLease(self.kv)


class OfflineChannel(Protocol):
    """One configured channel as a command-line tool sees it: the core's store is open and
    `submit` ingests like the running gateway would, but no connector is started."""

    @property
    def name(self) -> str: ...
    @property
    def settings(self) -> ConnectorSettings: ...
    @property
    def submit(self) -> Submit: ...
    @property
    def quarantine(self) -> Quarantine: ...


class CliHost(Protocol):
    """What the core's command line gives a connector's commands."""

    @property
    def default_config(self) -> str: ...

    def with_channel(
        self, config: str, channel: str, kind: str, work: Callable[[OfflineChannel], Awaitable[int]]
    ) -> int:
        """Load `config`, find the channel `channel` of type `kind`, open the store and run
        `work` on it; returns its exit code (1, with a message, when the channel is missing)."""
        ...


@dataclass(frozen=True, slots=True)
class CliCommand:
    """`switchboard <group> <name> ...`, contributed by a connector class (`cli_commands`)."""

    group: str
    group_help: str
    name: str
    help: str
    # Declare the command's arguments on its own parser.
    arguments: Callable[[argparse.ArgumentParser], None]
    # Run it; returns the process exit code.
    run: Callable[[argparse.Namespace, CliHost], int]


class Connector(ABC):
    """Base class of every channel connector."""

    kind: ClassVar[str]
    settings_model: ClassVar[type[ConnectorSettings]]
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TEXT})
    identity_kind: ClassVar[str]
    # True when the sender sees a refusal at once (a synchronous API answering 4xx): a
    # message the core refuses is then not kept in quarantine.
    refusals_reach_sender: ClassVar[bool] = False

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        """Mount HTTP routes here (`ctx.add_route`): the app is frozen once it starts."""
        self.name = name
        self.settings = settings
        self.ctx = ctx

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the provider. Raise `NotReady` or `AuthFailed`."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop receiving; in-flight submits finish first."""

    @abstractmethod
    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver one message. Expected provider failures are results, not exceptions."""

    def openapi(self) -> dict[str, Any]:
        """OpenAPI for endpoints this channel serves to API clients (not a provider's own
        webhooks): `{"paths": {...}, "schemas": {...}}`, refs as `#/components/schemas/X`."""
        return {}

    async def parse_raw(self, item: RawItem) -> InboundMessage | DeliveryReceipt:
        """Read a quarantined provider item again (after a fix or a config change), for
        `switchboard quarantine retry`. Raise `ValueError` when it still cannot be read."""
        raise NotImplementedError(f"the {self.kind} connector cannot re-read raw items")

    @classmethod
    def cli_commands(cls) -> list[CliCommand]:
        """Commands this channel kind adds to `switchboard` (found through the connector
        registry, so a third-party channel can add its own)."""
        return []

    async def typing(self, to: Identity, conversation_id: str, typing: bool) -> None:  # noqa: B027
        """Show the customer that an agent is typing (channels with `Capability.TYPING`)."""

    # Channels that override `wait_status` show it live (`Capability.WAIT_STATUS`).
    async def wait_status(  # noqa: B027 - optional hook
        self, to: Identity, conversation_id: str, status: WaitStatus
    ) -> None:
        """Show the customer where they stand: closed until ..., their position and the
        estimated wait, or that they are being served."""
