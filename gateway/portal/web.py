"""HTTP for the customer portal.

Customers (no password; the signed link is the capability, scoped to one contact):
GET  /portal/{token}                              their conversations on every channel
POST /portal/{token}/conversations/{id}/reply     an answer (form: text, form)

API (bearer token):
POST   /v1/contacts/{id}/portal-link        a link for the contact (url, expires_at)
DELETE /v1/contacts/{id}/portal-link        every link given out for it stops working
POST   /v1/conversations/{id}/portal-link   a link, sent to the customer in the conversation
"""

from __future__ import annotations

import html
import secrets
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import nh3
from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.auth import require
from gateway.api.common import authenticate, gateway_of
from gateway.api.schemas import MessageOut, Out
from gateway.clock import iso
from gateway.i18n import primary
from gateway.portal.service import (
    Entry,
    Portal,
    PortalDisabled,
    Visitor,
    customer_status,
    form_mac,
)
from gateway.store.base import NotFound, OutboundRequest, Scope

if TYPE_CHECKING:
    from gateway.i18n import Texts

ROLES = ("admin", "agent", "supervisor", "integration")


class PortalLinkOut(Out):
    contact_id: str = Field(description="The contact the link shows (merges followed).")
    url: str = Field(description="`<public_url>/portal/<token>`: give it only to the customer.")
    expires_at: str


class PortalLinkSentOut(PortalLinkOut):
    message: MessageOut = Field(description="The message that carries the link (queued).")


class PortalRevokedOut(Out):
    contact_id: str
    revoked: bool


def portal_of(request: web.Request) -> Portal:
    portal: Portal | None = gateway_of(request).portal
    if portal is None:
        raise web.HTTPNotFound()
    return portal


def _enabled(request: web.Request) -> Portal:
    portal = portal_of(request)
    if not portal.enabled:
        fail(409, "portal_disabled", "the customer portal is not enabled (portal.enabled)")
    return portal


# --- the API -------------------------------------------------------------------------------
async def _sees_all(portal: Portal, contact_id: str, scope: Scope | None) -> None:
    """A link shows every conversation of the contact to whoever holds it: a caller limited
    to some queues gets (or sends) one only when it sees all of them."""
    hidden = await portal.hidden_from(contact_id, scope)
    if hidden:
        fail(
            403,
            "portal_scope",
            f"the contact has {hidden} conversation(s) you do not see, which a portal link "
            "would show; an admin or a supervisor of those queues can send it",
        )


async def issue_link(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *ROLES)
    portal = _enabled(request)
    gw = gateway_of(request)
    # An agent issues links for the contacts it sees.
    contact = await gw.store.get_contact(request.match_info["id"], principal.scope)
    await _sees_all(portal, contact.id, principal.scope)
    try:
        issued = await portal.issue(contact.id)
    except PortalDisabled:
        fail(409, "portal_disabled", "the customer portal is not enabled (portal.enabled)")
    return web.json_response(
        {"contact_id": issued.contact_id, "url": issued.url, "expires_at": iso(issued.expires)},
        status=201,
    )


async def revoke_links(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *ROLES)
    portal = portal_of(request)
    gw = gateway_of(request)
    contact = await gw.store.get_contact(request.match_info["id"], principal.scope)
    holder = await portal.revoke(contact.id)
    return web.json_response({"contact_id": holder, "revoked": True})


async def send_link(request: web.Request) -> web.Response:
    """A link for the conversation's contact, sent into the conversation by the caller (an
    agent's message on the customer's channel, in the customer's language)."""
    principal = authenticate(request)
    require(principal, "admin", "agent", "supervisor", "integration")
    portal = _enabled(request)
    gw = gateway_of(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    if conv.last_channel not in gw.connectors:
        fail(
            409, "channel_unavailable", f"channel {conv.last_channel!r} is not configured any more"
        )
    await _sees_all(portal, conv.contact_id, principal.scope)
    issued = await portal.issue(conv.contact_id)
    contact = await gw.store.get_contact(issued.contact_id)
    lang = portal.texts.language_for(contact.attributes)
    text = portal.texts.text("portal.link_message", lang, url=issued.url)
    message = await gw.services.reply(
        OutboundRequest(
            conversation_id=conv.id,
            text=text,
            # A service message, not the agent's answer: it stamps no first response and
            # leaves the conversation's status (and the KPIs' replies) alone.
            sender_type="system",
            sender_id=principal.agent if principal.role == "agent" else principal.name,
            now=gw.clock(),
            scope=principal.scope,
        )
    )
    return web.json_response(
        {
            "contact_id": issued.contact_id,
            "url": issued.url,
            "expires_at": iso(issued.expires),
            "message": message.to_api(),
        },
        status=202,
    )


# --- the customer's pages --------------------------------------------------------------------
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    # The link is the key: never sent on as a referrer, never cached, never indexed.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1c2330;line-height:1.5;background:#f7f8fa}h1{margin-bottom:.3rem}"
    ".hint{color:#4a5568;font-size:.9rem}.conv{background:#fff;border:1px solid #d9dde3;"
    "border-radius:.5rem;padding:1rem 1.2rem;margin:1.2rem 0}.conv h2{font-size:1.15rem;"
    "margin:0 0 .3rem}.meta{color:#4a5568;font-size:.9rem;display:flex;gap:.8rem;"
    "flex-wrap:wrap}.status{font-weight:600;padding:0 .45rem;border-radius:.3rem}"
    ".status.open{background:#e3efff;color:#174ea6}.status.waiting{background:#fff3cd;"
    "color:#7a5300}.status.resolved{background:#e6f4ea;color:#1e6b34}ol.transcript{list-style:"
    "none;padding:0;margin:.8rem 0}ol.transcript li{margin:.5rem 0;padding:.5rem .7rem;"
    "border-radius:.4rem;max-width:85%}li.in{background:#eef2f7;margin-right:auto}"
    "li.out{background:#e3efff;margin-left:auto}.who{font-weight:600;font-size:.85rem}"
    "time{color:#4a5568;font-size:.8rem;margin-left:.5rem}.text{white-space:pre-wrap;"
    "overflow-wrap:anywhere;margin:.2rem 0 0}textarea{width:100%;min-height:5rem;font:inherit;"
    "box-sizing:border-box}button{font:inherit;padding:.45rem 1.1rem;margin-top:.4rem}"
    ".notice{background:#e6f4ea;padding:.5rem .7rem;border-radius:.4rem}.notice.error{"
    "background:#fde8e8}.files{font-size:.85rem;color:#4a5568}nav.lang a{margin-left:.5rem}"
)


def _page(lang: str, title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(text=doc, status=status, headers=_HEADERS)


def _request_language(request: web.Request) -> str | None:
    chosen = primary(request.query.get("lang"))
    if chosen is not None:
        return chosen
    for part in request.headers.get("Accept-Language", "").split(","):
        found = primary(part.split(";", 1)[0])
        if found is not None:
            return found
    return None


def _language(request: web.Request, texts: Texts, visitor: Visitor | None) -> str:
    """`?lang=`, else the contact's own `language`, else the browser's, else what the
    contact's channels told us, else the default."""
    explicit = primary(request.query.get("lang"))
    if explicit is not None:
        return explicit
    if visitor is not None:
        own = primary(visitor.contact.attributes.get("language"))
        if own is not None:
            return own
    return _request_language(request) or texts.language_for(
        visitor.contact.attributes if visitor else None
    )


def _refused(request: web.Request, portal: Portal, refusal: str) -> web.Response:
    lang = _language(request, portal.texts, None)
    key, status = (
        ("portal.link_invalid", 403) if refusal == "forged" else ("portal.link_expired", 410)
    )
    text = portal.texts.text(key, lang)
    return _page(lang, text, f'<h1 id="refused">{html.escape(text)}</h1>', status)


async def _visitor(request: web.Request) -> tuple[Portal, Visitor] | web.Response:
    portal = portal_of(request)
    if not portal.enabled:
        raise web.HTTPNotFound()
    found = await portal.open(request.match_info["token"])
    if isinstance(found, str):
        return _refused(request, portal, found)
    return portal, found


def _message_html(entry: Entry, lang: str, texts: Texts, tz: str) -> str:
    items = []
    for m in entry.messages:
        who = texts.text("portal.you" if m.direction == "in" else "portal.team", lang)
        # An email with HTML only shows its markup, sanitised; anything else its text.
        body = html.escape(m.text) if m.text.strip() or not m.html else nh3.clean(m.html)
        files = ""
        if m.attachments:
            names = ", ".join(html.escape(str(a.get("name") or "")) for a in m.attachments)
            files = f'<div class="files">📎 {names}</div>'
        items.append(
            f'<li class="{m.direction}"><span class="who">{html.escape(who)}</span>'
            f'<time datetime="{iso(m.created_at)}">{html.escape(texts.datetime(m.created_at, lang, tz))}'
            f'</time><div class="text">{body}</div>{files}</li>'
        )
    return f'<ol class="transcript">{"".join(items)}</ol>'


def _entry_html(
    entry: Entry,
    lang: str,
    texts: Texts,
    token: str,
    secret: bytes,
    notice: tuple[str, bool] | None,
    max_chars: int,
    tz: str,
) -> str:
    conv = entry.conversation
    status = customer_status(conv.status)
    title = conv.subject or texts.text(
        "portal.request", lang, date=texts.datetime(conv.created_at, lang, tz)
    )
    channel_kind = conv.channel_kind
    try:
        channel = texts.text(f"portal.channel.{channel_kind}", lang)
    except KeyError:
        channel = conv.channel
    parts = [
        f'<section class="conv" id="c-{html.escape(conv.id)}" data-status="{status}"'
        f' data-channel="{html.escape(channel_kind)}">',
        f"<h2>{html.escape(title)}</h2>",
        '<div class="meta">'
        f'<span class="channel">{html.escape(channel)}</span>'
        f'<span class="status {status}">{html.escape(texts.text(f"portal.status.{status}", lang))}'
        "</span>"
        f'<span class="activity">{html.escape(texts.text("portal.last_activity", lang, date=texts.datetime(conv.updated_at, lang, tz)))}'
        "</span></div>",
        _message_html(entry, lang, texts, tz),
    ]
    if notice is not None:
        text, error = notice
        parts.append(
            f'<p class="notice{" error" if error else ""}" role="status">{html.escape(text)}</p>'
        )
    if entry.can_reply:
        nonce = secrets.token_urlsafe(16)
        form = f"{nonce}.{form_mac(secret, token, conv.id, nonce)}"
        action = f"/portal/{quote(token)}/conversations/{quote(conv.id)}/reply?lang={lang}"
        label = texts.text("portal.reply_label", lang)
        hint = ""
        if status == "resolved":
            hint = f'<p class="hint">{html.escape(texts.text("portal.reply_reopens", lang))}</p>'
        parts.append(
            f'<form method="post" action="{html.escape(action)}">'
            f'<label for="r-{html.escape(conv.id)}">{html.escape(label)}</label>'
            f'<textarea id="r-{html.escape(conv.id)}" name="text" required'
            f' maxlength="{max_chars}"></textarea>'
            f'<input type="hidden" name="form" value="{html.escape(form)}">{hint}'
            f'<button type="submit">{html.escape(texts.text("portal.reply_submit", lang))}</button>'
            "</form>"
        )
    elif status == "resolved":
        key = "portal.reply_closed" if entry.elsewhere else "portal.reply_closed_new"
        parts.append(f'<p class="hint closed">{html.escape(texts.text(key, lang))}</p>')
    parts.append("</section>")
    return "".join(parts)


async def _render(
    request: web.Request,
    portal: Portal,
    visitor: Visitor,
    notice: tuple[str, str, bool] | None = None,
    status: int = 200,
) -> web.Response:
    texts = portal.texts
    lang = _language(request, texts, visitor)
    token = request.match_info["token"]
    entries = await portal.entries(visitor.contact)
    secret = await portal.secret()
    max_chars = portal.config.max_reply_chars
    tz = portal.config.timezone
    title = texts.text("portal.title", lang)
    other = "en" if lang == "de" else "de"
    body = [
        f'<nav class="lang"><a href="/portal/{quote(token)}?lang={other}" hreflang="{other}">'
        f"{'English' if other == 'en' else 'Deutsch'}</a></nav>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="intro">{html.escape(texts.text("portal.intro", lang))}</p>',
        f'<p class="hint" id="valid">{html.escape(texts.text("portal.valid_until", lang, date=texts.datetime(visitor.link.expires, lang, tz)))}</p>',
    ]
    if not entries:
        body.append(f'<p id="empty">{html.escape(texts.text("portal.empty", lang))}</p>')
    for entry in entries:
        here = None
        if notice is not None and notice[0] == entry.conversation.id:
            here = (notice[1], notice[2])
        body.append(_entry_html(entry, lang, texts, token, secret, here, max_chars, tz))
    return _page(lang, title, "".join(body), status)


async def portal_page(request: web.Request) -> web.Response:
    found = await _visitor(request)
    if isinstance(found, web.Response):
        return found
    portal, visitor = found
    notice = None
    done, conv_id = request.query.get("done"), request.query.get("c")
    if conv_id and done in ("joined", "elsewhere"):
        lang = _language(request, portal.texts, visitor)
        key = "portal.reply_sent" if done == "joined" else "portal.reply_elsewhere"
        notice = (conv_id, portal.texts.text(key, lang), False)
    return await _render(request, portal, visitor, notice)


def _same_origin(request: web.Request, public_url: str) -> bool:
    """A browser's POST from this site: `Sec-Fetch-Site` says same-origin; without it,
    `Origin` (when sent) is this server as the browser reached it, or the public URL. (The
    page's `no-referrer` policy makes a browser send `Origin: null` on its own forms, which
    is why the fetch metadata is asked first.)"""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {f"{request.scheme}://{request.host}"}
    public = urlsplit(public_url)
    if public.scheme and public.netloc:
        allowed.add(f"{public.scheme}://{public.netloc}")
    return origin in allowed


async def portal_reply(request: web.Request) -> web.Response:
    found = await _visitor(request)
    if isinstance(found, web.Response):
        return found
    portal, visitor = found
    texts = portal.texts
    lang = _language(request, texts, visitor)
    token, conv_id = request.match_info["token"], request.match_info["conversation"]
    if not _same_origin(request, portal.public_url()):
        text = texts.text("portal.form_stale", lang)
        return _page(lang, text, f'<h1 id="refused">{html.escape(text)}</h1>', 403)
    form = await request.post()
    nonce, _, mac = str(form.get("form") or "").partition(".")
    secret = await portal.secret()
    expected = form_mac(secret, token, conv_id, nonce)
    if not nonce or not secrets.compare_digest(mac.encode(), expected.encode()):
        notice = (conv_id, texts.text("portal.form_stale", lang), True)
        return await _render(request, portal, visitor, notice, 403)
    text = str(form.get("text") or "").replace("\r\n", "\n").strip()
    limit = portal.config.max_reply_chars
    if not text:
        return await _render(
            request, portal, visitor, (conv_id, texts.text("portal.reply_empty", lang), True), 422
        )
    if len(text) > limit:
        notice = (conv_id, texts.text("portal.reply_too_long", lang, count=limit), True)
        return await _render(request, portal, visitor, notice, 413)
    wait = await portal.answer_wait(visitor.contact)
    if wait:
        notice = (conv_id, texts.text("portal.too_many", lang), True)
        response = await _render(request, portal, visitor, notice, 429)
        response.headers["Retry-After"] = str(max(1, int(wait)))
        return response
    try:
        outcome = await portal.reply(visitor.contact, conv_id, text, nonce)
    except NotFound:
        return _refused(request, portal, "forged")
    if outcome.result == "closed":
        notice = (conv_id, texts.text("portal.reply_closed", lang), True)
        return await _render(request, portal, visitor, notice, 409)
    target = outcome.conversation_id or conv_id
    raise web.HTTPSeeOther(
        f"/portal/{quote(token)}?lang={lang}&done={outcome.result}&c={quote(target)}#c-{quote(target)}",
        headers={k: v for k, v in _HEADERS.items() if k != "Content-Type"},
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/contacts/{id}/portal-link", issue_link)
    r.add_delete("/v1/contacts/{id}/portal-link", revoke_links)
    r.add_post("/v1/conversations/{id}/portal-link", send_link)
    r.add_get("/portal/{token}", portal_page)
    r.add_post("/portal/{token}/conversations/{conversation}/reply", portal_reply)
