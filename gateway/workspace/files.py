"""Agents' files on their way out (issue 14): the core degrades them to what the channel
carries. A channel that takes files (`Capability.ATTACHMENTS`: email attaches them, Twilio
sends them as MMS media by URL) gets each file with its data and a signed link; every other
channel (web chat, Telegram, the `api` channel) gets the text plus a signed download link
per file, under a heading in the customer's language. The links are served by `serve`
without a token while their signature and expiry hold."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from connectors.base import Attachment, Capability, Connector, OutboundMessage
from gateway.i18n import Texts
from gateway.linksecret import kept_secret
from gateway.store.base import NotFound, OutboxItem, Store
from gateway.workspace.attachments import link, verify

SECRET_NAMESPACE, SECRET_KEY = "agent_files", "link_secret"


class AgentFiles:
    def __init__(
        self,
        store: Store,
        texts: Texts,
        public_url: Callable[[], str],
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.texts = texts
        self.public_url = public_url
        self.ttl = ttl
        self.clock = clock
        self._secret = b""

    async def secret(self) -> bytes:
        """Made at first use and kept in the store, so links outlive a restart."""
        if not self._secret:
            self._secret = await kept_secret(self.store, SECRET_NAMESPACE, SECRET_KEY)
        return self._secret

    async def attach(
        self, item: OutboxItem, connector: Connector, message: OutboundMessage
    ) -> OutboundMessage:
        """`message` (already degraded) with the item's files as the channel carries them."""
        files = [a for a in item.attachments if a.get("blob")]
        if not files:
            return message
        secret = await self.secret()
        base, now = self.public_url(), self.clock()
        urls = [link(base, secret, str(a["blob"]), self.ttl, now) for a in files]
        if Capability.ATTACHMENTS in connector.capabilities:
            carried = []
            for a, url in zip(files, urls, strict=True):
                content_type, data = await self.store.get_blob(str(a["blob"]))
                carried.append(
                    Attachment(str(a.get("name") or "file"), content_type, len(data), data, url)
                )
            message.attachments = carried
            return message
        language = self.texts.default
        try:
            conv = await self.store.get_conversation(item.conversation_id)
            contact = await self.store.get_contact(conv.contact_id)
            language = self.texts.language_for(contact.attributes)
        except NotFound:
            pass
        lines = [f"{a.get('name') or 'file'}: {url}" for a, url in zip(files, urls, strict=True)]
        heading = self.texts.text("attachment.links", language)
        message.text = f"{message.text}\n\n{heading}\n" + "\n".join(lines)
        return message

    async def serve(self, request: web.Request) -> web.Response:
        """`GET /files/{id}?exp=&sig=`: a file sent as a link, for whoever holds the link."""
        blob = request.match_info["id"]
        exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
        if not verify(await self.secret(), blob, exp, sig, self.clock()):
            raise web.HTTPForbidden(text="This link is not valid (any more).")
        try:
            content_type, data = await self.store.get_blob(blob)
        except NotFound:
            raise web.HTTPNotFound(text="No such file.") from None
        return web.Response(
            body=data,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": "attachment",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, max-age=300",
            },
        )
