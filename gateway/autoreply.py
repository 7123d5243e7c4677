"""Automatic acknowledgements, with loop safety.

A new conversation may get an automatic first answer. Never to a message a machine sent
(auto-replies, bounces, bulk and list mail: `automated` on the message), and at most
`max_per_contact` automatic messages per contact per `window`, so two robots can never
keep each other busy. Connectors mark what they send as automatic (email:
`Auto-Submitted: auto-replied`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config import AcknowledgementConfig
from gateway.i18n import Texts
from gateway.model import Conversation, Message
from gateway.store.base import OutboundRequest, Store

log = logging.getLogger("switchboard.autoreply")


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class Acknowledger:
    def __init__(
        self,
        config: AcknowledgementConfig | None,
        store: Store,
        send: Callable[[OutboundRequest], Awaitable[Message]],
        clock: Callable[[], float],
        texts: Texts | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.send = send
        self.clock = clock
        self.texts = texts or Texts()

    async def on_new_conversation(
        self, conv: Conversation, message: Message, contact_name: str | None
    ) -> Message | None:
        """Send the acknowledgement when allowed; returns it, or None and logs why not."""
        cfg = self.config
        if cfg is None or (cfg.channels is not None and conv.last_channel not in cfg.channels):
            return None
        if message.automated:
            log.info("no acknowledgement: automated message", extra={"conversation": conv.id})
            return None
        now = self.clock()
        if (
            await self.store.automatic_count(conv.contact_id, now - cfg.window)
            >= cfg.max_per_contact
        ):
            log.info("no acknowledgement: per-contact cap reached", extra={"conversation": conv.id})
            return None
        params = _Blank(
            name=contact_name or "",
            reference=conv.thread_token or conv.id,
            subject=conv.subject or "",
        )
        if cfg.text is not None:  # one text for every language
            text = cfg.text.format_map(params)
        else:  # the catalogs (and `texts:` overrides), in the contact's language
            contact = await self.store.get_contact(conv.contact_id)
            text = self.texts.text(
                "acknowledgement", self.texts.language_for(contact.attributes), **params
            )
        return await self.send(OutboundRequest(conv.id, text, "bot", None, now, automatic=True))
