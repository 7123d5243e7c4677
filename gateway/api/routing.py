"""`/v1/routing/explain`: the routing decision for a sample message, changing nothing."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.common import Body, authenticate, gateway_of, read_body
from router import MessageFacts


class ExplainBody(Body):
    channel: str
    text: str = ""
    subject: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


async def explain(request: web.Request) -> web.Response:
    authenticate(request)
    body = await read_body(request, ExplainBody)
    gw = gateway_of(request)
    channel = next((c for c in gw.config.channels if c.name == body.channel), None)
    if channel is None:
        fail(422, "validation_error", f"unknown channel {body.channel!r}")
    facts = MessageFacts(channel.name, channel.type, body.text, body.subject, body.attributes)
    return web.json_response(await gw.explain(facts))
