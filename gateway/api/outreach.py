"""`POST /v1/conversations` (issue 15, proactive outreach): an agent or the API starts a
conversation with a contact on a channel that allows it; the first message goes through
the outbox like every reply. The rules of which channel may start: gateway/outreach/."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import Field, model_validator

from connectors.base import Identity
from connectors.http import fail
from gateway.api import conversations
from gateway.api.auth import require
from gateway.api.common import Body, MessageText, authenticate, gateway_of, read_body
from gateway.identity import InvalidIdentity, normalize
from gateway.outreach import policy
from gateway.outreach.service import classifier, start
from gateway.outreach.store import ConversationExists, OutreachRefused, StartRequest


class To(Body):
    address: str = Field(min_length=1, max_length=512, description="Email, E.164 phone, user id")
    kind: str | None = Field(
        None, description="The identity kind (email, phone, telegram, api); the channel's own"
    )
    channel: str | None = Field(
        None,
        max_length=200,
        description="Same as `kind`, also as a channel kind (sms, whatsapp) or the channel's name",
    )
    name: str | None = Field(None, max_length=200, description="Name of a new contact")


class Template(Body):
    sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$", description="Approved template ContentSid")
    variables: dict[str, str] = Field(default_factory=dict, max_length=50)


class StartBody(Body):
    channel: str = Field(min_length=1, max_length=200, description="A configured channel name")
    contact_id: str | None = Field(None, max_length=200)
    to: To | None = None
    text: MessageText
    subject: str | None = Field(None, max_length=998)
    template: Template | None = Field(None, description="WhatsApp: the approved template")
    assign_to: str | None = Field(
        None, description="The agent; null: routed by the rules. Default: the calling agent"
    )
    queue: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_recipient(self) -> StartBody:
        if (self.contact_id is None) == (self.to is None):
            raise ValueError("give exactly one of contact_id and to")
        return self


def _assignee(body: StartBody, role: str, agent: str | None) -> str | None:
    """Who gets the conversation: the calling agent unless `assign_to` says otherwise (an
    agent may start it only for itself or for routing); others choose, default routing."""
    given = "assign_to" in body.model_fields_set
    if role == "agent":
        if given and body.assign_to not in (None, agent):
            fail(403, "forbidden", "an agent token starts conversations only for itself")
        return body.assign_to if given else agent
    return body.assign_to


_MAILBOX = re.compile(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+")

# `to.channel` as people write it: an identity kind, a channel kind or a short name of one.
_KIND_OF = {
    "email": "email",
    "phone": "phone",
    "sms": "phone",
    "whatsapp": "phone",
    "twilio_sms": "phone",
    "twilio_whatsapp": "phone",
    "telegram": "telegram",
    "api": "api",
}


def _kind(to: To, channel: str, default: str) -> str:
    """The identity kind `to` names (`kind`, else `channel`), or the channel's own."""
    if to.kind is not None:
        return to.kind.strip().lower()
    if to.channel is None or to.channel == channel:
        return default
    named = to.channel.strip().lower()
    return _KIND_OF.get(named, named)


async def start_conversation(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "integration", "supervisor")
    body = await read_body(request, StartBody)
    gw = gateway_of(request)
    connector = gw.connectors.get(body.channel)
    if connector is None:
        fail(422, "unknown_channel", f"no channel {body.channel!r} is configured")
    decided = policy.may_start(
        body.channel, connector.kind, template=body.template is not None, subject=body.subject
    )
    if isinstance(decided, policy.Refusal):
        fail(422, decided.code, decided.message)
    assignee = _assignee(body, principal.role, principal.agent)
    if assignee is not None and gw.config.agent(assignee) is None:
        fail(422, "unknown_agent", f"unknown agent {assignee!r}")
    if body.queue is not None and gw.config.routing.queue(body.queue) is None:
        fail(422, "unknown_queue", f"unknown queue {body.queue!r}")
    scope = principal.scope
    if body.queue is not None and scope is not None and not scope.sees_queue(body.queue):
        # Where the rules would put it is checked by the store, on the classification it keeps.
        fail(403, "queue_scope", f"queue {body.queue!r} is not one of the queues you see")
    to = None
    if body.to is not None:
        kind = _kind(body.to, body.channel, decided.identity_kind)
        if kind != decided.identity_kind:
            fail(
                422,
                "wrong_address_kind",
                f"channel {body.channel!r} reaches {decided.identity_kind} addresses, not {kind}",
            )
        try:
            to = normalize(Identity(kind, body.to.address))
        except InvalidIdentity as exc:
            fail(422, "invalid_address", str(exc))
        if kind == "email" and not _MAILBOX.fullmatch(to.address):
            # We write to it: a bare address, not a display name or a local name.
            fail(422, "invalid_address", f"not an email address: {body.to.address!r}")
    metadata: dict[str, Any] = {"outreach": {"by": principal.name}}
    if body.template is not None:
        # Sent by the WhatsApp channel in place of the text while the window is closed.
        metadata["prompt"] = {
            "id": "outreach",
            "choices": [],
            "template": {"content_sid": body.template.sid, "variables": body.template.variables},
        }
    by = principal.agent or principal.name
    try:
        outcome = await start(
            gw.services,
            StartRequest(
                channel=body.channel,
                channel_kind=connector.kind,
                identity_kind=decided.identity_kind,
                text=body.text,
                sender_id=by,
                by=by,
                now=gw.clock(),
                classify=classifier(
                    gw.config.routing,
                    body.channel,
                    connector.kind,
                    body.text,
                    body.subject,
                    body.queue,
                    by,
                    gw.clock,
                ),
                contact_id=body.contact_id,
                to=to,
                name=body.to.name if body.to is not None else None,
                subject=body.subject,
                assignee=assignee,
                needs_inbound=decided.needs_inbound,
                metadata=metadata,
                scope=scope,
            ),
        )
    except OutreachRefused as refused:
        fail(refused.status, refused.code, str(refused))
    except ConversationExists as exists:
        fail(409, "conversation_exists", str(exists))
    [out] = await conversations.render_conversations(request, [outcome.conversation])
    return web.json_response(out | {"messages": [outcome.message.to_api()]}, status=201)
