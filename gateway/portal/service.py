"""The customer portal's core: links (issued, read, revoked), what a contact sees, and its
answers, which join the conversation as the customer's inbound message.

An answer is ingested through the normal pipeline (gateway/ingest.py) as if the customer had
written on the conversation's reply channel, from its reply address, carrying the
conversation's thread token: it joins the conversation (reopens it when resolved), is
routed, counted and answered as usual, and the agent's reply goes out on that channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from connectors.base import Identity, InboundMessage
from connectors.ratelimit import LocalRateLimiter, RateLimiter
from gateway.i18n import Texts, primary
from gateway.identity import normalize
from gateway.ingest import ChannelInfo, Ingestor, RejectedMessage
from gateway.linksecret import kept_secret
from gateway.model import ACTIVE_STATUSES, Contact, Conversation, Message
from gateway.portal import links
from gateway.portal.config import PortalConfig
from gateway.store.base import (
    ConversationFilter,
    NotFound,
    PortalStore,
    Scope,
    Store,
    portal_store,
)

log = logging.getLogger("switchboard.portal")

SECRET_NAMESPACE, SECRET_KEY = "portal", "link_secret"
MAX_CONVERSATIONS = 100
MAX_MERGE_HOPS = 16


class PortalDisabled(Exception):
    """`portal.enabled` is false."""


@dataclass(frozen=True, slots=True)
class Issued:
    contact_id: str
    url: str
    token: str
    expires: int


@dataclass(frozen=True, slots=True)
class Visitor:
    """Whom a working link shows: the contact that holds the conversations now (merges
    followed) and the link itself."""

    contact: Contact
    link: links.Link


@dataclass(frozen=True, slots=True)
class Entry:
    """One conversation as the customer sees it."""

    conversation: Conversation
    messages: list[Message]
    can_reply: bool
    # Another conversation of the contact is active (where a follow-up goes).
    elsewhere: bool = False


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """`joined`: the answer is in the conversation it was written to; `elsewhere`: the
    threading rule put it in another (the contact's active one); `closed`: not taken."""

    result: str
    conversation_id: str | None


def customer_status(status: str) -> str:
    """A conversation's status as a customer understands it: open, waiting or resolved."""
    if status == "pending":
        return "waiting"
    if status in ACTIVE_STATUSES:
        return "open"
    return "resolved"


def visible(message: Message) -> bool:
    """What the customer may read in the portal: what was said with them. Internal notes are
    not messages at all (a table of their own); verification codes are left out."""
    return "verification" not in message.metadata


class Portal:
    def __init__(
        self,
        config: Callable[[], PortalConfig],
        store: Store,
        ingestor: Ingestor,
        texts: Texts,
        clock: Callable[[], float],
        public_url: Callable[[], str],
        channel_kinds: Callable[[], dict[str, str]],
        rates: RateLimiter | None = None,
    ) -> None:
        self._config = config
        self.store = store
        self.epochs: PortalStore = portal_store(store)
        self.ingestor = ingestor
        self.texts = texts
        self.clock = clock
        self.public_url = public_url
        self.channel_kinds = channel_kinds
        self._secret = b""
        # Answers per contact and hour: shared by every instance when the gateway has
        # Redis (gateway/coord/ratelimit.py), else counted in this process.
        self.rates: RateLimiter = rates or LocalRateLimiter()

    @property
    def config(self) -> PortalConfig:
        return self._config()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def secret(self) -> bytes:
        """The configured secret, else one made at first use and kept in the store (links
        stay valid across restarts and instances; instances making it at once agree)."""
        configured = self.config.secret
        if configured is not None:
            return configured.get_secret_value().encode()
        if not self._secret:
            self._secret = await kept_secret(self.store, SECRET_NAMESPACE, SECRET_KEY)
        return self._secret

    # --- links ---------------------------------------------------------------------------
    async def issue(self, contact_id: str) -> Issued:
        """A link for the contact (merges followed: the contact that holds its
        conversations now). NotFound for an unknown contact; PortalDisabled."""
        if not self.enabled:
            raise PortalDisabled()
        contact = await self._holder(contact_id)
        epoch = await self.epochs.portal_epoch(contact.id)
        expires = int(self.clock() + self.config.link_ttl)
        token = links.sign(await self.secret(), contact.id, epoch, expires)
        url = f"{self.public_url().rstrip('/')}/portal/{token}"
        log.info("portal link issued", extra={"contact": contact.id, "expires": expires})
        return Issued(contact.id, url, token, expires)

    async def widget_link(self, identity: Identity, language: str) -> dict[str, str] | None:
        """`ctx.portal_link` for the web chat: a link for the visitor's contact and the
        text to show it with; None while the visitor has no contact (nothing sent yet)."""
        if not self.enabled:
            return None
        try:
            contact = await self.store.find_contact(normalize(identity))
        except (NotFound, ValueError):
            return None
        issued = await self.issue(contact.id)
        lang = primary(language) or self.texts.language_for(contact.attributes)
        return {"url": issued.url, "label": self.texts.text("portal.widget_link", lang)}

    async def revoke(self, contact_id: str) -> str:
        """Every link that shows the contact's conversations stops working: merges are
        followed to the contact holding them, whose links and those of every contact merged
        into it are revoked. Returns the holder's id."""
        contact = await self._holder(contact_id)
        await self.epochs.portal_revoke(contact.id, self.clock())
        log.info("portal links revoked", extra={"contact": contact.id})
        return contact.id

    async def open(self, token: str) -> Visitor | links.Refusal:
        """Whom a link shows, or why it does not work."""
        link = links.read(await self.secret(), token)
        epoch: int | None = None
        if link is not None:
            try:
                epoch = await self.epochs.portal_epoch(link.contact_id)
            except NotFound:  # erased
                epoch = None
        refusal = links.check(link, self.clock(), epoch)
        if refusal is not None or link is None:
            return refusal or "forged"
        try:
            contact = await self._holder(link.contact_id)
        except NotFound:
            return "revoked"
        return Visitor(contact, link)

    async def _holder(self, contact_id: str) -> Contact:
        contact = await self.store.get_contact(contact_id)
        for _ in range(MAX_MERGE_HOPS):
            if contact.merged_into is None:
                break
            contact = await self.store.get_contact(contact.merged_into)
        return contact

    async def hidden_from(self, contact_id: str, scope: Scope | None) -> int:
        """How many of the conversations a link for `contact_id` would show `scope` does
        not see (a link shows the holder of the contact's merges all of them)."""
        if scope is None or scope.queues is None:
            return 0
        holder = await self._holder(contact_id)
        rows, _ = await self.store.list_conversations(
            ConversationFilter(contact_id=holder.id, limit=MAX_CONVERSATIONS)
        )
        return sum(1 for conv in rows if not scope.sees(conv))

    # --- what the customer sees ------------------------------------------------------------
    async def entries(self, contact: Contact) -> list[Entry]:
        """The contact's conversations, the latest activity first, each with what was said."""
        rows, _ = await self.store.list_conversations(
            ConversationFilter(contact_id=contact.id, limit=MAX_CONVERSATIONS)
        )
        rows.sort(key=lambda c: (c.updated_at, c.id), reverse=True)
        active = [c.id for c in rows if c.status in ACTIVE_STATUSES]
        out = []
        for conv in rows:
            messages = [m for m in await self.store.messages(conv.id) if visible(m)]
            others = [a for a in active if a != conv.id]
            out.append(Entry(conv, messages, self.can_reply(conv, others), bool(others)))
        return out

    def can_reply(self, conv: Conversation, others: list[str]) -> bool:
        """An answer can join this conversation: it is not closed, it has a channel and an
        address, and it is active or (resolved) none of the contact's `others` is active (a
        contact has one active conversation: the answer would join that one)."""
        if conv.status == "closed" or conv.reply_kind is None or not conv.reply_address:
            return False
        if conv.last_channel not in self.channel_kinds():
            return False
        return conv.status in ACTIVE_STATUSES or not others

    # --- answers ---------------------------------------------------------------------------
    async def answer_wait(self, contact: Contact) -> float:
        """Count one answer of the contact: 0 when allowed, else the seconds to wait."""
        return await self.rates.window(
            f"answers:{contact.id}", self.config.answers_per_hour, 3600.0
        )

    async def reply(
        self, contact: Contact, conversation_id: str, text: str, nonce: str
    ) -> ReplyOutcome:
        """Ingest the customer's answer into the conversation. `nonce` (from the form) makes
        a second submission of the same form a duplicate, not a second message. NotFound
        when the conversation is not the contact's."""
        conv = await self.store.get_conversation(conversation_id)
        if conv.contact_id != contact.id:
            raise NotFound(f"conversation {conversation_id} not found")
        rows, _ = await self.store.list_conversations(
            ConversationFilter(contact_id=contact.id, limit=MAX_CONVERSATIONS)
        )
        others = [c.id for c in rows if c.status in ACTIVE_STATUSES and c.id != conv.id]
        if not self.can_reply(conv, others) or conv.reply_kind is None:
            return ReplyOutcome("closed", None)
        kind = self.channel_kinds()[conv.last_channel]
        msg = InboundMessage(
            external_id=f"portal:{nonce}",
            sender=Identity(conv.reply_kind, conv.reply_address or ""),
            text=text,
            thread_token=conv.thread_token,
            metadata={"via": "portal"},
        )
        try:
            result = await self.ingestor.submit(
                ChannelInfo(conv.last_channel, kind), msg, follow_up=True
            )
        except RejectedMessage:
            return ReplyOutcome("closed", None)
        log.info(
            "portal answer taken",
            extra={"conversation": result.conversation_id, "duplicate": result.duplicate},
        )
        joined = result.conversation_id == conv.id
        return ReplyOutcome("joined" if joined else "elsewhere", result.conversation_id)


def form_mac(secret: bytes, token: str, conversation_id: str, nonce: str) -> str:
    """The form token of one reply form: only a page the portal rendered for this link
    and conversation carries it (with the same-origin check: no cross-site posting)."""
    digest = hmac.new(
        secret, f"portal-form:{token}:{conversation_id}:{nonce}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
