"""Offers (issue 12): `POST /v1/conversations/{id}/offer/accept` and `/offer/reject`,
`GET /v1/offers` (the pending offers, an agent's own for an agent token); and
`POST /v1/admin/reload`. Changes go through `gw.services`."""

from __future__ import annotations

from aiohttp import web

from connectors.http import fail
from gateway.api.auth import Principal, require
from gateway.api.common import Body, authenticate, gateway_of, read_body
from gateway.store.base import escalation_store


class OfferAnswerBody(Body):
    agent: str | None = None


async def _agent(request: web.Request, principal: Principal) -> str:
    """The agent answering: an agent token answers as itself; an admin or an integration
    names the agent (`{"agent": ...}`)."""
    body = await read_body(request, OfferAnswerBody) if request.body_exists else OfferAnswerBody()
    if principal.role == "agent":
        if body.agent not in (None, principal.agent):
            fail(403, "forbidden", "an agent token answers only its own offers")
        assert principal.agent is not None
        return principal.agent
    if body.agent is None:
        fail(422, "validation_error", 'give the agent whose offer this answers: {"agent": ...}')
    return body.agent


async def _answer(request: web.Request, accept: bool) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "integration")
    agent = await _agent(request, principal)
    gw = gateway_of(request)
    conv = await gw.services.answer_offer(request.match_info["id"], agent, accept, principal.scope)
    return web.json_response(conv.to_api())


async def accept(request: web.Request) -> web.Response:
    return await _answer(request, True)


async def reject(request: web.Request) -> web.Response:
    return await _answer(request, False)


async def list_offers(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    agent = principal.agent if principal.role == "agent" else request.query.get("agent")
    offers = await escalation_store(gw.store).offers(agent_id=agent)
    return web.json_response({"offers": [o.to_api() for o in offers]})


async def reload(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin")
    result = await gateway_of(request).reload()
    if not result.ok:
        fail(
            422,
            "invalid_config",
            "the configuration was not reloaded; the running one stays",
            [
                {"field": p["path"], "message": p["message"]}
                | ({"line": p["line"]} if p.get("line") else {})
                for p in result.problems
            ],
        )
    return web.json_response(result.to_api())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/conversations/{id}/offer/accept", accept)
    r.add_post("/v1/conversations/{id}/offer/reject", reject)
    r.add_get("/v1/offers", list_offers)
    r.add_post("/v1/admin/reload", reload)
