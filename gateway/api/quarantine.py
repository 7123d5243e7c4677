"""`/v1/quarantine`: inbound items the gateway could not take (admin only).

GET  /v1/quarantine?status=new|retried|dismissed&channel=&limit=&cursor=
GET  /v1/quarantine/{id}           one item (without its bytes)
GET  /v1/quarantine/{id}/raw       the item exactly as the provider sent it
POST /v1/quarantine/{id}/retry     read it again with today's code and config, ingest it
POST /v1/quarantine/{id}/dismiss   reviewed; nothing to do
"""

from __future__ import annotations

from aiohttp import web

from connectors.http import fail
from gateway.api.auth import require
from gateway.api.common import GATEWAY, authenticate, int_param
from gateway.store.base import QUARANTINE_STATUSES


def _admin(request: web.Request) -> None:
    require(authenticate(request), "admin")


async def list_items(request: web.Request) -> web.Response:
    _admin(request)
    status = request.query.get("status")
    if status is not None and status not in QUARANTINE_STATUSES:
        fail(400, "invalid_parameter", "status must be new, retried or dismissed")
    items, cursor = await request.app[GATEWAY].store.quarantine_list(
        status=status,
        channel=request.query.get("channel"),
        limit=int_param(request, "limit", 50, 1, 500),
        cursor=request.query.get("cursor"),
    )
    return web.json_response({"items": [i.to_api() for i in items], "next_cursor": cursor})


async def get_item(request: web.Request) -> web.Response:
    _admin(request)
    item, _ = await request.app[GATEWAY].store.quarantine_get(request.match_info["id"])
    return web.json_response(item.to_api())


async def get_raw(request: web.Request) -> web.Response:
    _admin(request)
    item, data = await request.app[GATEWAY].store.quarantine_get(request.match_info["id"])
    ext = ".eml" if item.content_type == "message/rfc822" else ".bin"
    return web.Response(
        body=data,
        headers={
            "Content-Type": item.content_type,
            "Content-Disposition": f'attachment; filename="{item.id}{ext}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def retry(request: web.Request) -> web.Response:
    _admin(request)
    item = await request.app[GATEWAY].quarantine.retry(request.match_info["id"])
    return web.json_response(item.to_api(), status=200 if item.status == "retried" else 422)


async def dismiss(request: web.Request) -> web.Response:
    _admin(request)
    item = await request.app[GATEWAY].quarantine.dismiss(request.match_info["id"])
    return web.json_response(item.to_api())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/quarantine", list_items)
    r.add_get("/v1/quarantine/{id}", get_item)
    r.add_get("/v1/quarantine/{id}/raw", get_raw)
    r.add_post("/v1/quarantine/{id}/retry", retry)
    r.add_post("/v1/quarantine/{id}/dismiss", dismiss)
