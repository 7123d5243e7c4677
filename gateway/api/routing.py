"""`/v1/routing/explain`: the routing decision for a sample message, or for a waiting
conversation as it stands (its escalation step, agents it skips, its sticky agent),
changing nothing."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.common import Body, authenticate, gateway_of, read_body
from gateway.time.escalation import explain_conversation
from router import Handoff, MessageFacts, Priority


class HandoffBody(Body):
    reason: str = Field(min_length=1, max_length=200)
    summary: str | None = Field(None, max_length=4000)
    language: str | None = Field(None, max_length=35)
    skills: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
    priority: Priority | None = None

    def facts(self) -> Handoff:
        return Handoff(self.reason, self.summary, self.language, tuple(self.skills), self.priority)


class ExplainBody(Body):
    channel: str | None = Field(None, description="A sample message's channel.")
    conversation: str | None = Field(
        None, description="Explain this conversation as it stands instead of a message."
    )
    text: str = ""
    subject: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    handoff: HandoffBody | None = Field(
        None,
        description="Issue 15: explain the message as a bot's handoff would route it "
        "(rules with `when: {handoff: ...}`).",
    )


async def explain(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, ExplainBody)
    gw = gateway_of(request)
    if (body.channel is None) == (body.conversation is None):
        fail(422, "validation_error", "give either `channel` (a message) or `conversation`")
    if body.conversation is not None:
        conv = await gw.store.get_conversation(body.conversation, principal.scope)
        return web.json_response(await explain_conversation(gw, conv))
    channel = next((c for c in gw.config.channels if c.name == body.channel), None)
    if channel is None:
        fail(422, "validation_error", f"unknown channel {body.channel!r}")
    facts = MessageFacts(
        channel.name,
        channel.type,
        body.text,
        body.subject,
        body.attributes,
        body.handoff.facts() if body.handoff is not None else None,
    )
    return web.json_response(await gw.explain(facts))
