"""`POST /v1/agents/{id}/heartbeat`: the console says its agent is still there
(gateway/coord/presence.py)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from connectors.http import fail
from gateway.api.common import authenticate, gateway_of


class HeartbeatOut(BaseModel):
    id: str
    ttl: float  # seconds the heartbeat lasts; send the next within a third of it


async def heartbeat(request: web.Request) -> web.Response:
    principal = authenticate(request)
    agent_id = request.match_info["id"]
    if principal.role != "agent" or principal.agent != agent_id:
        fail(403, "forbidden", "an agent's heartbeat comes from its own console")
    gw = gateway_of(request)
    if gw.config.agent(agent_id) is None:
        fail(404, "not_found", f"agent {agent_id} not found")
    await gw.heartbeats.beat(agent_id)
    return web.json_response(HeartbeatOut(id=agent_id, ttl=gw.heartbeats.ttl).model_dump())
