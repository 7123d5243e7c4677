"""`/v1/contacts`: find and read contacts; undo a merge."""

from __future__ import annotations

from aiohttp import web

from connectors.http import fail
from gateway.api import workspace
from gateway.api.auth import require
from gateway.api.common import authenticate, gateway_of
from gateway.identity import InvalidIdentity, parse_identity


async def get_contact(request: web.Request) -> web.Response:
    principal = authenticate(request)
    contact = await gateway_of(request).store.get_contact(request.match_info["id"], principal.scope)
    # Issue 14: the console's contact panel (conversations across channels, merges).
    return web.json_response(await workspace.panel(request, principal, contact))


async def find_contact(request: web.Request) -> web.Response:
    principal = authenticate(request)
    raw = request.query.get("identity")
    if not raw:
        fail(400, "invalid_parameter", "give ?identity=kind:address, e.g. email:a@b.c")
    try:
        identity = parse_identity(raw)
    except InvalidIdentity as exc:
        fail(400, "invalid_parameter", str(exc))
    contact = await gateway_of(request).store.find_contact(identity, principal.scope)
    return web.json_response({"contacts": [contact.to_api()]})


async def unmerge_contact(request: web.Request) -> web.Response:
    """Undo a merge (admin): the contact is on its own again, with the conversations the
    merge moved, and what it had proved is again only a claim."""
    principal = authenticate(request)
    require(principal, "admin")
    gw = gateway_of(request)
    contact_id = request.match_info["id"]
    await gw.services.unmerge(contact_id)
    contact = await gw.store.get_contact(contact_id)
    return web.json_response(contact.to_api())
