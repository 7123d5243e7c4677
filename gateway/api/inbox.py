"""The agent workspace's API (issue 14): the conversation list with filters, sorts and
keyset pages, the sidebar counts, read markers, snooze, tags, priority and `/v1/search`.
Shapes: the OpenAPI document (gateway/api/openapi.py). Changes go through
`gw.inbox` (gateway/inbox.py), on the one commit path."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.auth import Principal, reader_of
from gateway.api.common import Body, authenticate, gateway_of, int_param, only_params, read_body
from gateway.clock import iso
from gateway.domain.workspace import MAX_TAGS, valid_tag
from gateway.model import PRIORITIES, Conversation
from gateway.store.inbox import (
    DEFAULT_SORT,
    MARK_CLOSE,
    MARK_OPEN,
    SORT_NAMES,
    STATUSES,
    BadCursor,
    ConversationItem,
    ListQuery,
    SearchQuery,
    decode_cursor,
    encode_cursor,
    inbox_store,
    search_words,
)
from gateway.time.sla import sla_json

MAX_SNOOZE = 366 * 86400.0


def _bool_param(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        fail(400, "invalid_parameter", f"{name} must be true or false")
    return raw == "true"


def _one_of(request: web.Request, name: str, values: Iterable[str]) -> str | None:
    raw = request.query.get(name)
    choices = list(values)
    if raw is not None and raw not in choices:
        fail(400, "invalid_parameter", f"{name} must be one of {', '.join(choices)}")
    return raw


# --- rendering --------------------------------------------------------------------------------


async def render(
    request: web.Request, principal: Principal, convs: list[Conversation]
) -> list[dict[str, Any]]:
    """Conversations as the API shows them: with SLA due times (issue 12) and the
    workspace's fields for the caller (issue 14)."""
    gw = gateway_of(request)
    items = await inbox_store(gw.store).ws_items([c.id for c in convs], reader_of(principal))
    return await render_items(
        request, [items.get(c.id) or ConversationItem(conversation=c) for c in convs]
    )


async def render_items(request: web.Request, items: list[ConversationItem]) -> list[dict[str, Any]]:
    gw = gateway_of(request)
    slas: dict[str, Any] = {}
    if gw.config.routing.sla is not None:
        slas = await gw.notices.times.sla_of([i.conversation.id for i in items])
    return [
        i.conversation.to_api()
        | {
            "sla": sla_json(slas.get(i.conversation.id)),
            "contact_name": i.contact_name,
            "last_message_at": iso(i.last_message_at),
            "snoozed_until": iso(i.snoozed_until),
            "unread": i.unread,
            "waiting": i.waiting,
        }
        for i in items
    ]


async def one(request: web.Request, principal: Principal, conv: Conversation) -> web.Response:
    return web.json_response((await render(request, principal, [conv]))[0])


# --- list and counts --------------------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    q = request.query
    statuses: tuple[str, ...] = ()
    if "status" in q:
        statuses = tuple(s.strip() for s in q["status"].split(","))
        for status in statuses:
            if status not in STATUSES:
                fail(400, "invalid_parameter", f"status must be among {', '.join(STATUSES)}")
    assignee, unassigned = q.get("assignee"), False
    if assignee == "me":
        if principal.agent is None:
            fail(400, "invalid_parameter", "assignee=me needs an agent token")
        assignee = principal.agent
    elif assignee == "none":
        assignee, unassigned = None, True
    sort = _one_of(request, "sort", SORT_NAMES) or DEFAULT_SORT
    after = None
    if q.get("cursor"):
        try:
            after = decode_cursor(sort, q["cursor"])
        except BadCursor as exc:
            fail(400, "invalid_parameter", str(exc))
    sla_cfg = gw.config.routing.sla
    query = ListQuery(
        reader=reader_of(principal),
        now=gw.clock(),
        statuses=statuses,
        queue=q.get("queue"),
        channel=q.get("channel"),
        contact_id=q.get("contact"),
        tag=q.get("tag"),
        assignee=assignee,
        unassigned=unassigned,
        sla=_one_of(request, "sla", ("breached", "warning", "ok")),
        sla_warning=sla_cfg.warning if sla_cfg is not None else 900.0,
        waiting=_bool_param(request, "waiting"),
        unread=_bool_param(request, "unread"),
        sort=sort,
        limit=int_param(request, "limit", 50, 1, 500),
        after=after,
        scope=principal.scope,
    )
    items = await inbox_store(gw.store).ws_list(query)
    page, more = items[: query.limit], len(items) > query.limit
    cursor = None
    if more and page:
        cursor = encode_cursor(sort, page[-1].sort_value, page[-1].conversation.id)
    return web.json_response(
        {"conversations": await render_items(request, page), "next_cursor": cursor}
    )


async def counts(request: web.Request) -> web.Response:
    principal = authenticate(request)
    found = await inbox_store(gateway_of(request).store).ws_counts(
        reader_of(principal), principal.agent, principal.scope
    )
    return web.json_response({"views": found.views, "status": found.status})


# --- read markers -----------------------------------------------------------------------------


class ReadBody(Body):
    message_id: str | None = Field(
        None, max_length=200, description="Read up to this message (default: the latest)."
    )


async def mark_read(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, ReadBody)
    gw = gateway_of(request)
    conv_id = request.match_info["id"]
    reader = reader_of(principal)
    marker = await gw.inbox.mark_read(conv_id, reader, body.message_id, principal.scope)
    items = await inbox_store(gw.store).ws_items([conv_id], reader)
    return web.json_response(
        {
            "conversation_id": marker.conversation_id,
            "reader": marker.reader,
            "message_id": marker.message_id,
            "read_at": iso(marker.read_at),
            "unread": items[conv_id].unread if conv_id in items else 0,
        }
    )


# --- actions ----------------------------------------------------------------------------------


class SnoozeBody(Body):
    until: str = Field(
        description="When it wakes: an ISO 8601 time with its offset, e.g. 2026-12-01T08:00:00Z.",
        max_length=64,
    )


class TagsBody(Body):
    tags: list[str] = Field(
        min_length=1,
        max_length=MAX_TAGS,
        description="Tags to add: 1-64 characters each, no whitespace or commas.",
    )


class PriorityBody(Body):
    priority: Literal["low", "normal", "high", "urgent"]


def _by(principal: Principal) -> str:
    return principal.agent or principal.name


async def snooze(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, SnoozeBody)
    gw = gateway_of(request)
    try:
        when = datetime.fromisoformat(body.until)
    except ValueError:
        fail(422, "validation_error", "until must be an ISO 8601 time")
    if when.tzinfo is None:
        fail(422, "validation_error", "until needs its UTC offset (e.g. Z or +01:00)")
    until, now = when.timestamp(), gw.clock()
    if until <= now:
        fail(422, "validation_error", "until must be in the future")
    if until > now + MAX_SNOOZE:
        fail(422, "validation_error", "a snooze lasts at most a year")
    conv = await gw.inbox.snooze(request.match_info["id"], until, _by(principal), principal.scope)
    return await one(request, principal, conv)


async def wake(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    conv = await gw.inbox.wake(request.match_info["id"], _by(principal), principal.scope)
    return await one(request, principal, conv)


def _check_tags(tags: list[str]) -> None:
    bad = [t for t in tags if not valid_tag(t)]
    if bad:
        fail(
            422,
            "validation_error",
            "a tag has 1-64 characters, no whitespace or commas",
            [{"field": "tags", "message": f"not a tag: {t!r}"} for t in bad[:10]],
        )


async def add_tags(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, TagsBody)
    _check_tags(body.tags)
    gw = gateway_of(request)
    conv = await gw.inbox.tags(
        request.match_info["id"], body.tags, [], _by(principal), principal.scope
    )
    return await one(request, principal, conv)


async def remove_tags(request: web.Request) -> web.Response:
    principal = authenticate(request)
    only_params(request, ("tag",))
    tags = request.query.getall("tag", [])
    if not tags:
        fail(400, "invalid_parameter", "give the tags to remove as ?tag=")
    gw = gateway_of(request)
    conv = await gw.inbox.tags(
        request.match_info["id"], [], list(tags), _by(principal), principal.scope
    )
    return await one(request, principal, conv)


async def set_priority(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, PriorityBody)
    gw = gateway_of(request)
    conv = await gw.inbox.priority(
        request.match_info["id"],
        PRIORITIES.index(body.priority),
        _by(principal),
        principal.scope,
    )
    return await one(request, principal, conv)


# --- search -----------------------------------------------------------------------------------


def snippet_html(marked: str) -> str:
    """The store's snippet as safe HTML: everything escaped, the matches in <mark>."""
    out = html.escape(marked, quote=True)
    return out.replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")


async def search(request: web.Request) -> web.Response:
    principal = authenticate(request)
    raw = request.query.get("q", "")
    if not raw.strip() or len(raw) > 200:
        fail(400, "invalid_parameter", "q is required (1-200 characters)")
    words = search_words(raw)
    if not words:
        fail(400, "invalid_parameter", "q needs at least one letter or digit")
    limit = int_param(request, "limit", 20, 1, 100)
    offset = 0
    if request.query.get("cursor"):
        try:
            value, _ = decode_cursor("search", request.query["cursor"])
        except BadCursor as exc:
            fail(400, "invalid_parameter", str(exc))
        offset = max(0, int(value))
    gw = gateway_of(request)
    ws = inbox_store(gw.store)
    hits = await ws.ws_search(SearchQuery(words, limit, offset, principal.scope))
    page = hits[:limit]
    items = await ws.ws_items(list({h.conversation_id for h in page}), reader_of(principal))
    rendered = {r["id"]: r for r in await render_items(request, [items[k] for k in sorted(items)])}
    results = [
        {
            "kind": h.kind,
            "conversation_id": h.conversation_id,
            "message_id": h.message_id,
            "contact_id": h.contact_id,
            "snippet": snippet_html(h.snippet),
            "at": iso(h.at),
            "conversation": rendered.get(h.conversation_id),
        }
        for h in page
        if h.conversation_id in rendered
    ]
    cursor = encode_cursor("search", offset + limit, "") if len(hits) > limit else None
    return web.json_response({"results": results, "next_cursor": cursor})


def add_routes(app: web.Application) -> None:
    """The workspace's routes besides the list (mounted in gateway/api/routes.py before
    `/v1/conversations/{id}`, so `counts` is not taken for an id)."""
    r = app.router
    r.add_get("/v1/conversations/counts", counts)
    r.add_get("/v1/search", search)
    r.add_post("/v1/conversations/{id}/read", mark_read)
    r.add_post("/v1/conversations/{id}/snooze", snooze)
    r.add_delete("/v1/conversations/{id}/snooze", wake)
    r.add_post("/v1/conversations/{id}/tags", add_tags)
    r.add_delete("/v1/conversations/{id}/tags", remove_tags)
    r.add_post("/v1/conversations/{id}/priority", set_priority)
