"""`/v1/me` and `/v1/agents`: who a token is; agents with presence, capacity and load."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.auth import Principal, reader_of, require
from gateway.api.common import Body, authenticate, gateway_of, read_body


class PresenceBody(Body):
    status: str = Field(pattern="^(online|away|offline)$")


class CapacityBody(Body):
    capacity: dict[str, Annotated[int, Field(ge=0)]]


async def me(request: web.Request) -> web.Response:
    """Who the token is: lets a console or integration sign in with just a token."""
    principal = authenticate(request)
    cfg = gateway_of(request).config.agent(principal.agent) if principal.agent else None
    scope = principal.scope
    return web.json_response(
        {
            "name": principal.name,
            "role": principal.role,
            "agent": principal.agent,
            "agent_name": cfg.name if cfg is not None else None,
            # The queues it sees (besides its own conversations); null: every queue.
            "queues": None if scope is None or scope.queues is None else sorted(scope.queues),
            "reader": reader_of(principal),
        }
    )


async def list_agents(request: web.Request) -> web.Response:
    authenticate(request)
    gw = gateway_of(request)
    snap = await gw.store.routing_state()  # agents and loads, not the backlog
    out = []
    for state in snap.agents:
        cfg = gw.config.agent(state.id)
        if cfg is None:
            continue
        load: dict[str, int] = {}
        for (agent_id, kind), n in snap.loads.items():
            if agent_id == state.id:
                load[kind] = n
        out.append(
            {
                "id": state.id,
                "name": cfg.name,
                "presence": state.presence,
                "skills": cfg.skills,
                "queues": cfg.queues,
                "capacity": state.capacity,
                "load": load,
            }
        )
    return web.json_response({"agents": out})


def _agent_target(request: web.Request, principal: Principal) -> str:
    agent_id = request.match_info["id"]
    if principal.role == "agent" and agent_id != principal.agent:
        fail(403, "forbidden", "an agent token changes only its own agent")
    if principal.role not in ("admin", "agent"):
        fail(403, "forbidden", "this needs an admin or agent token")
    if gateway_of(request).config.agent(agent_id) is None:
        fail(404, "not_found", f"agent {agent_id} not found")
    return agent_id


async def set_presence(request: web.Request) -> web.Response:
    principal = authenticate(request)
    agent_id = _agent_target(request, principal)
    body = await read_body(request, PresenceBody)
    gw = gateway_of(request)
    await gw.services.set_presence(agent_id, body.status)
    return web.json_response({"id": agent_id, "presence": body.status})


async def set_capacity(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin")
    agent_id = _agent_target(request, principal)
    body = await read_body(request, CapacityBody)
    if any(v < 0 for v in body.capacity.values()):
        fail(422, "validation_error", "capacity values must be >= 0")
    gw = gateway_of(request)
    await gw.services.set_capacity(agent_id, body.capacity)
    return web.json_response({"id": agent_id, "capacity": body.capacity})
