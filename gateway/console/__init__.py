"""The agent console (`/console`) and the demo page (`/`), served by the gateway.

Static files only: the console is plain HTML, CSS and JavaScript that talks to the public
HTTP API and `/v1/events`, like any helpdesk integration. Pages are served with a
Content-Security-Policy that forbids inline script.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from urllib.parse import quote

from aiohttp import web

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("gateway.console").joinpath(name).read_bytes()


def _csp(request: web.Request) -> str:
    host = request.host
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(request: web.Request, content_type: str, page: bool) -> dict[str, str]:
    headers = {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    if page:
        headers["Content-Security-Policy"] = _csp(request)
        headers["X-Frame-Options"] = "DENY"
    return headers


async def console_page(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), headers=_headers(request, TYPES[".html"], True))


async def reports_page(request: web.Request) -> web.Response:
    """The supervisors' reports (issue 13): KPIs of `/v1/stats` as charts and a table."""
    return web.Response(
        body=_asset("reports.html"), headers=_headers(request, TYPES[".html"], True)
    )


async def console_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ("console.js", "i18n.js", "console.css", "reports.js", "reports.css"):
        raise web.HTTPNotFound()
    suffix = name[name.rindex(".") :]
    return web.Response(body=_asset(name), headers=_headers(request, TYPES[suffix], False))


def _webchat_channel(request: web.Request) -> str | None:
    from gateway.api.common import GATEWAY

    gw = request.app.get(GATEWAY)
    if gw is None:
        return None
    for channel in gw.config.channels:
        if channel.type == "webchat":
            return str(channel.name)
    return None


async def demo_page(request: web.Request) -> web.Response:
    channel = _webchat_channel(request)
    if channel is None:
        body = _asset("plain.html")
    else:
        path = f"/webchat/{quote(channel, safe='')}/widget.js"
        url = f"{request.scheme}://{request.host}{path}"
        text = (
            _asset("demo.html")
            .decode("utf-8")
            .replace("{{channel}}", html.escape(channel))
            .replace("{{widget_url}}", html.escape(url))
            .replace("{{widget_path}}", html.escape(path))
        )
        body = text.encode("utf-8")
    return web.Response(body=body, headers=_headers(request, TYPES[".html"], True))


async def to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console")


def add_routes(app: web.Application) -> None:
    """Mount `/` (the demo page) and `/console` with its assets."""
    r = app.router
    r.add_get("/", demo_page)
    r.add_get("/console", console_page)
    r.add_get("/console/", to_console)
    r.add_get("/console/reports", reports_page)
    r.add_get("/console/{name}", console_asset)
