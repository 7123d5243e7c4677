"""Twilio SMS and WhatsApp channels: one shared implementation, two channel kinds.

Inbound: `POST /channels/{name}/twilio/inbound` and `/channels/{name}/twilio/status`,
signed by Twilio; answered with empty TwiML only after `ctx.submit` returned.
Outbound: Twilio's REST Messages resource.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

from aiohttp import web
from multidict import MultiDict

from connectors.base import (
    Attachment,
    Capability,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryReceipt,
    DeliveryResult,
    Identity,
    InboundMessage,
    OutboundMessage,
    RawItem,
    Refused,
)
from connectors.http import Rejected

from .errors import WHATSAPP_WINDOW_CLOSED, error_reason
from .phone import WHATSAPP_PREFIX, phone_address, to_e164
from .rest import TwilioRestClient
from .settings import TwilioSmsSettings, TwilioWhatsAppSettings
from .signature import SignatureVerifier, undecodable
from .webhook import (
    delivery_receipt,
    form_bytes,
    media_items,
    media_name,
    message_sid,
    not_utf8,
    parse_form,
    require,
    twiml_response,
    verified_params,
)

LAST_INBOUND_KEY = "last_inbound:"


class TwilioConnector(Connector):
    """Shared by SMS and WhatsApp; subclasses set `kind`, `address_prefix` and settings."""

    identity_kind: ClassVar[str] = "phone"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.TEXT, Capability.ATTACHMENTS}
    )
    settings_model: ClassVar[type[ConnectorSettings]] = TwilioSmsSettings
    # How Twilio writes this channel's addresses: "" (SMS) or "whatsapp:".
    address_prefix: ClassVar[str] = ""

    settings: TwilioSmsSettings

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        if not isinstance(settings, self.settings_model) or not isinstance(
            settings, TwilioSmsSettings
        ):
            raise TypeError(f"{type(self).__name__} needs {self.settings_model.__name__}")
        super().__init__(name, settings, ctx)
        self.rest = TwilioRestClient(
            ctx.http,
            account_sid=settings.account_sid,
            auth=settings.rest_auth(),
            api_base_url=settings.api_base_url,
            timeout=settings.request_timeout,
        )
        self._verifier = SignatureVerifier(settings.auth_token)
        ctx.add_route("POST", self.inbound_path, self._on_inbound)
        ctx.add_route("POST", self.status_path, self._on_status)

    # -- addresses -------------------------------------------------------------------
    @property
    def inbound_path(self) -> str:
        return f"/channels/{self.name}/twilio/inbound"

    @property
    def status_path(self) -> str:
        return f"/channels/{self.name}/twilio/status"

    @property
    def public_base(self) -> str | None:
        base = self.settings.webhook_base_url or self.ctx.public_url
        return base.rstrip("/") if base else None

    @property
    def inbound_url(self) -> str | None:
        """What to paste into the Twilio console as the number's messaging webhook."""
        return f"{self.public_base}{self.inbound_path}" if self.public_base else None

    @property
    def status_callback_url(self) -> str | None:
        return f"{self.public_base}{self.status_path}" if self.public_base else None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        await self.rest.check_account()
        self.ctx.log.info(
            "twilio channel %s ready; messaging webhook %s",
            self.name,
            self.inbound_url or "(no public URL configured)",
        )

    # -- inbound ---------------------------------------------------------------------
    async def _params(self, request: web.Request) -> MultiDict[str]:
        return await verified_params(
            request,
            verifier=self._verifier,
            public_base=self.public_base,
            account_sid=self.settings.account_sid,
            limit=self.ctx.max_body_bytes,
        )

    async def _on_inbound(self, request: web.Request) -> web.StreamResponse:
        try:
            params = await self._params(request)
        except Rejected as rejected:  # not proven to come from Twilio: nothing is kept
            self.ctx.log.warning(
                "twilio %s inbound webhook refused (%s): %s",
                self.name,
                rejected.status,
                rejected.reason,
            )
            return rejected.response()
        field = not_utf8(params)
        if field is not None:  # signed, so Twilio's: keep it as it came for a person to see
            return await self._quarantine(params, f"unreadable webhook: {field} is not UTF-8")
        try:
            message = await self._inbound_message(params)
        except Rejected as rejected:
            # Signed by Twilio but not a message we can read: keep it, answer 200 so that
            # Twilio does not redeliver something that will never be readable.
            return await self._quarantine(params, f"unreadable webhook: {rejected.reason}")
        try:
            result = await self.ctx.submit(message)
        except Refused as exc:
            self.ctx.log.warning(
                "twilio %s: %s refused by the gateway, quarantined as %s: %s",
                self.name,
                message.external_id,
                exc.quarantine_id,
                exc.reason,
            )
            return twiml_response()
        except Exception:
            self.ctx.log.exception("twilio %s: could not submit %s", self.name, message.external_id)
            return Rejected(503, "temporarily unable to accept the message").response()
        if not result.duplicate:
            try:
                await self._note_inbound(message.sender.address)
            except Exception:  # the message is stored; only the window bookkeeping failed
                self.ctx.log.exception("twilio %s: could not record the inbound time", self.name)
        return twiml_response()

    async def _quarantine(self, params: MultiDict[str], reason: str) -> web.StreamResponse:
        body = form_bytes(params)
        sid = params.get("MessageSid") or params.get("SmsMessageSid") or None
        if sid is not None and undecodable(sid):
            sid = None
        try:
            qid = await self.ctx.quarantine(
                RawItem("application/x-www-form-urlencoded", body, sid), reason
            )
        except Exception:
            self.ctx.log.exception("twilio %s: could not quarantine a webhook", self.name)
            return Rejected(503, "temporarily unable to accept the message").response()
        self.ctx.log.warning("twilio %s: webhook quarantined as %s: %s", self.name, qid, reason)
        return twiml_response()

    async def parse_raw(self, item: RawItem) -> InboundMessage | DeliveryReceipt:
        """A quarantined inbound webhook read again (its parameters, form-encoded)."""
        try:
            return await self._inbound_message(parse_form(item.data))
        except Rejected as rejected:
            raise ValueError(rejected.reason) from None

    async def _on_status(self, request: web.Request) -> web.StreamResponse:
        try:
            params = await self._params(request)
            field = not_utf8(params)
            if field is not None:
                raise Rejected(400, f"{field} is not UTF-8")
            receipt = delivery_receipt(params)
        except Rejected as rejected:
            self.ctx.log.warning(
                "twilio %s status webhook refused (%s): %s",
                self.name,
                rejected.status,
                rejected.reason,
            )
            return rejected.response()
        if receipt is not None:
            try:
                await self.ctx.submit(receipt)
            except Exception:
                self.ctx.log.exception("twilio %s: could not submit a receipt", self.name)
                return Rejected(503, "temporarily unable to accept the status").response()
        return twiml_response()

    async def _inbound_message(self, params: MultiDict[str]) -> InboundMessage:
        sid = message_sid(params)
        (sender,) = require(params, "From")
        attachments = await asyncio.gather(
            *(
                self._attachment(url, content_type, i)
                for i, (url, content_type) in enumerate(media_items(params))
            )
        )
        metadata: dict[str, object] = {
            "to": params.get("To"),
            "from": sender,
            "twilio": {k: params.getall(k)[0] for k in params},
        }
        for name in ("WaId", "Latitude", "Longitude", "Address", "ButtonText", "ButtonPayload"):
            if params.get(name):
                metadata[name] = params[name]
        return InboundMessage(
            external_id=sid,
            sender=Identity("phone", phone_address(sender)),
            text=params.get("Body", ""),
            sender_name=params.get("ProfileName") or None,
            attachments=list(attachments),
            provider_message_id=sid,
            metadata=metadata,
            contact_attributes=opt_out_attributes(params),
        )

    async def _attachment(self, url: str, content_type: str, index: int) -> Attachment:
        name = media_name(url, content_type, index)
        if not self.rest.media_allowed(url):
            # Fetching any URL a webhook names would let it read loopback or cloud
            # metadata and hand the answer to agents as an attachment.
            self.ctx.log.warning(
                "twilio %s: media %s is not on Twilio's hosts; kept by reference, not fetched",
                self.name,
                url,
            )
            return Attachment(name=name, content_type=content_type, size=0, url=url)
        try:
            media = await self.rest.fetch_media(url, self.settings.max_media_bytes)
        except Exception as exc:  # kept by reference; the message itself must not be lost
            self.ctx.log.warning("twilio %s: media %s not fetched: %r", self.name, url, exc)
            return Attachment(name=name, content_type=content_type, size=0, url=url)
        return Attachment(
            name=name,
            content_type=content_type or media.content_type,
            size=media.size,
            data=media.data,
            url=url,
        )

    async def _note_inbound(self, address: str) -> None:
        """Remember when this number last wrote to us (the WhatsApp session window)."""
        await self.ctx.kv.set(LAST_INBOUND_KEY + address, repr(time.time()))

    async def last_inbound(self, address: str) -> float | None:
        value = await self.ctx.kv.get(LAST_INBOUND_KEY + address)
        try:
            return float(value) if value else None
        except ValueError:
            return None

    # -- outbound --------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> DeliveryResult:
        to = to_e164(message.to.address)
        if to is None:
            return DeliveryResult.failed(f"not a valid E.164 phone number: {message.to.address!r}")
        form: list[tuple[str, str]] = [("To", self.address_prefix + to)]
        if self.settings.messaging_service_sid:
            form.append(("MessagingServiceSid", self.settings.messaging_service_sid))
        if self.settings.from_number:
            form.append(("From", self.address_prefix + self.settings.from_number))
        if self.settings.status_callbacks and self.status_callback_url:
            form.append(("StatusCallback", self.status_callback_url))
        content = await self._content(message, to)
        if isinstance(content, DeliveryResult):
            return content
        form.extend(content)
        return await self.rest.create_message(form)

    async def _content(
        self, message: OutboundMessage, to: str
    ) -> list[tuple[str, str]] | DeliveryResult:
        media = [("MediaUrl", a.url) for a in message.attachments if a.url]
        if not message.text and not media:
            return DeliveryResult.failed("nothing to send: no text and no media URL")
        return ([("Body", message.text)] if message.text else []) + media


class TwilioSmsConnector(TwilioConnector):
    kind: ClassVar[str] = "twilio_sms"
    settings_model: ClassVar[type[ConnectorSettings]] = TwilioSmsSettings


class TwilioWhatsAppConnector(TwilioConnector):
    """WhatsApp through Twilio. Free text only inside the customer's 24-hour window; outside
    it the configured approved template (ContentSid) is sent, or the message fails."""

    kind: ClassVar[str] = "twilio_whatsapp"
    settings_model: ClassVar[type[ConnectorSettings]] = TwilioWhatsAppSettings
    address_prefix: ClassVar[str] = WHATSAPP_PREFIX

    settings: TwilioWhatsAppSettings

    async def window_open(self, address: str) -> bool:
        last = await self.last_inbound(address)
        return last is not None and time.time() - last < self.settings.session_window_hours * 3600

    async def _content(
        self, message: OutboundMessage, to: str
    ) -> list[tuple[str, str]] | DeliveryResult:
        if await self.window_open(to):
            return await super()._content(message, to)
        if message.prompt is not None and message.prompt.template:
            # A survey outside the window: the template the core chose for it.
            chosen = message.prompt.template
            survey = [("ContentSid", str(chosen["content_sid"]))]
            if chosen.get("variables"):
                survey.append(
                    ("ContentVariables", json.dumps(chosen["variables"], ensure_ascii=False))
                )
            return survey
        template = self.settings.whatsapp_template
        if template is None:
            return DeliveryResult.failed(
                "WhatsApp 24-hour customer service window is closed (the customer last wrote "
                "more than 24 hours ago, or never): free text is refused, configure "
                "whatsapp_template to send an approved template instead "
                f"({error_reason(WHATSAPP_WINDOW_CLOSED)})"
            )
        self.ctx.log.info(
            "twilio %s: window closed for %s, sending template %s instead of message %s",
            self.name,
            to,
            template.content_sid,
            message.id,
        )
        variables = self.settings.template_variables(
            {
                "text": message.text,
                "sender_name": message.sender_name or "",
                "conversation_id": message.conversation_id,
            }
        )
        content: list[tuple[str, str]] = [("ContentSid", template.content_sid)]
        if variables:
            content.append(("ContentVariables", json.dumps(variables, ensure_ascii=False)))
        return content


# Twilio's default opt-out and opt-in keywords (Messaging Services' Advanced Opt-Out sends
# them as `OptOutType` too): Twilio itself stops delivering to a number that sent STOP.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})


def opt_out_attributes(params: MultiDict[str]) -> dict[str, str]:
    """`do_not_contact` for the contact when the customer opted out (or back in): the
    gateway then refuses to start a conversation with them."""
    kind = (params.get("OptOutType") or "").strip().upper()
    word = (params.get("Body") or "").strip().strip(".!").upper()
    if kind == "STOP" or (not kind and word in OPT_OUT_KEYWORDS):
        return {"do_not_contact": "true"}
    if kind == "START" or (not kind and word in OPT_IN_KEYWORDS):
        return {"do_not_contact": "false"}
    return {}
