"""The HTTP API (DESIGN §4): every route the gateway serves, mounted from one module per
resource. Handlers read from the store and change state through `gw.services`."""

from __future__ import annotations

from aiohttp import web

from gateway.api import (
    agents,
    contacts,
    conversations,
    health,
    heartbeat,
    inbox,
    offers,
    openapi,
    outreach,
    quarantine,
    routing,
    stats,
    stream,
    workspace,
)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", health.healthz)
    r.add_get("/readyz", health.readyz)
    r.add_get("/metrics", health.metrics)
    r.add_get("/v1/me", agents.me)
    r.add_get("/v1/conversations", conversations.list_conversations)
    r.add_post("/v1/conversations", outreach.start_conversation)  # issue 15
    inbox.add_routes(app)  # before /v1/conversations/{id}: `counts` is not an id
    r.add_get("/v1/conversations/{id}", conversations.get_conversation)
    r.add_post("/v1/conversations/{id}/messages", conversations.reply)
    r.add_post("/v1/conversations/{id}/assign", conversations.assign)
    r.add_post("/v1/conversations/{id}/transfer", conversations.transfer)
    r.add_post("/v1/conversations/{id}/resolve", conversations.resolve)
    r.add_post("/v1/conversations/{id}/reopen", conversations.reopen)
    r.add_post("/v1/conversations/{id}/typing", conversations.typing)
    r.add_get("/v1/agents", agents.list_agents)
    r.add_put("/v1/agents/{id}/presence", agents.set_presence)
    r.add_post("/v1/agents/{id}/heartbeat", heartbeat.heartbeat)
    r.add_put("/v1/agents/{id}/capacity", agents.set_capacity)
    r.add_get("/v1/contacts", contacts.find_contact)
    r.add_get("/v1/contacts/{id}", contacts.get_contact)
    r.add_post("/v1/contacts/{id}/unmerge", contacts.unmerge_contact)
    r.add_get("/v1/blobs/{id}", conversations.get_blob)
    r.add_post("/v1/routing/explain", routing.explain)
    r.add_get("/v1/events", stream.events)
    r.add_get("/v1/openapi.json", openapi.openapi_json)
    quarantine.add_routes(app)
    offers.add_routes(app)
    stats.add_routes(app)
    workspace.add_routes(app)
    from gateway import console

    console.add_routes(app)
