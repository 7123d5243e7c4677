"""The agent workspace's API (issue 14): internal notes, canned replies, the contact panel
(merge, undo, split) and who is viewing a conversation. Changes go through
`WorkspaceService` (the commit path); the rules are in gateway/workspace/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.auth import Principal, require
from gateway.api.common import Body, MessageText, authenticate, gateway_of, read_body
from gateway.config_workspace import CannedTexts, Shortcut
from gateway.identity import InvalidIdentity, parse_identity
from gateway.ids import new_id
from gateway.model import Contact
from gateway.store.base import Conflict
from gateway.store.workspace import CannedReply, workspace_store
from gateway.workspace import canned
from gateway.workspace.notes import mentions_in
from gateway.workspace.service import WorkspaceService

STAFF = ("admin", "agent", "supervisor", "integration")
LEADS = ("admin", "supervisor")


def _service(request: web.Request) -> WorkspaceService:
    return WorkspaceService(gateway_of(request).services)


def _who(principal: Principal) -> str:
    """The id a change is recorded under: the agent, else the token's name."""
    return principal.agent or principal.name


# --- notes -------------------------------------------------------------------------------------
class NoteBody(Body):
    text: MessageText
    mentions: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Agent ids to notify besides the `@id`s in the text.",
    )


async def create_note(
    request: web.Request,
    principal: Principal,
    text: str,
    mentions: list[str],
    attachments: list[dict[str, Any]] | None = None,
    blobs: dict[str, tuple[str, bytes]] | None = None,
    status: int = 201,
) -> web.Response:
    """Keep an internal note: 201 (202 through `POST …/messages` with `private: true`, the
    status that operation answers)."""
    require(principal, *STAFF)
    gw = gateway_of(request)
    agents = {a.id for a in gw.config.agents}
    unknown = [m for m in mentions if m not in agents]
    if unknown:
        fail(422, "validation_error", f"unknown agent {unknown[0]!r} in mentions")
    note = await _service(request).note(
        request.match_info["id"],
        _who(principal),
        text,
        mentions_in(text, agents, mentions),
        principal.scope,
        attachments,
        blobs,
    )
    return web.json_response(note.to_api(), status=status)


async def add_note(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    from gateway.workspace.attachments import read_upload

    body, files = await read_upload(request, NoteBody)
    attachments, blobs = files.stored()
    return await create_note(request, principal, body.text, body.mentions, attachments, blobs)


async def list_notes(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    notes = await workspace_store(gateway_of(request).store).notes(
        request.match_info["id"], principal.scope
    )
    return web.json_response({"notes": [n.to_api() for n in notes]})


async def timeline(request: web.Request, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's notes as timeline items (merged with its messages by the caller)."""
    principal = authenticate(request)
    notes = await workspace_store(gateway_of(request).store).notes(conversation_id, principal.scope)
    return [n.to_api() for n in notes]


# --- canned replies ----------------------------------------------------------------------------
class CannedBody(Body):
    shortcut: Shortcut
    title: str = Field(min_length=1, max_length=200)
    text: CannedTexts
    scope: Literal["team", "personal"]
    queues: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=50, description="Team: these queues (empty: all)."
    )
    agent: str | None = Field(None, description="Personal: its agent (an agent token: itself).")


async def _all_canned(request: web.Request) -> list[CannedReply]:
    gw = gateway_of(request)
    stored = await workspace_store(gw.store).canned_list()
    return [canned.from_config(c) for c in gw.config.canned_replies] + stored


def _sees(request: web.Request, principal: Principal, reply: CannedReply) -> bool:
    if principal.role == "agent":
        cfg = gateway_of(request).config.agent(principal.agent or "")
        queues: list[str] | None = None
        if principal.scope is not None and principal.scope.queues is not None:
            queues = list(cfg.queues) if cfg else []
        return canned.visible(reply, principal.agent, queues)
    return True


def _may_change(principal: Principal, reply: CannedReply) -> None:
    if reply.scope == "team":
        require(principal, *LEADS)
    elif principal.role == "agent" and reply.agent != principal.agent:
        fail(403, "forbidden", "an agent changes only its own personal canned replies")
    elif principal.role not in ("admin", "agent", "supervisor"):
        fail(403, "forbidden", "this needs the role admin, supervisor or agent")


async def list_canned(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    q, queue = request.query.get("q"), request.query.get("queue")
    replies = [
        r
        for r in await _all_canned(request)
        if _sees(request, principal, r) and canned.matches(r, q, queue)
    ]
    replies.sort(key=lambda r: (r.shortcut, r.scope != "personal", r.id))
    return web.json_response({"canned_replies": [r.to_api() for r in replies]})


def _from_body(principal: Principal, body: CannedBody, reply_id: str) -> CannedReply:
    gw_agent = body.agent
    if body.scope == "personal":
        if principal.role == "agent":
            if gw_agent not in (None, principal.agent):
                fail(403, "forbidden", "an agent makes personal canned replies for itself only")
            gw_agent = principal.agent
        if gw_agent is None:
            fail(422, "validation_error", "a personal canned reply names its `agent`")
    elif gw_agent is not None:
        fail(422, "validation_error", "a team canned reply has `queues`, not an `agent`")
    return CannedReply(
        id=reply_id,
        shortcut=body.shortcut,
        title=body.title,
        texts={str(k): v for k, v in body.text.items()},
        scope=body.scope,
        queues=list(body.queues) if body.scope == "team" else [],
        agent=gw_agent,
    )


def _check_refs(request: web.Request, reply: CannedReply) -> None:
    gw = gateway_of(request)
    if reply.agent is not None and gw.config.agent(reply.agent) is None:
        fail(422, "validation_error", f"unknown agent {reply.agent!r}")
    for queue in reply.queues:
        if gw.config.routing.queue(queue) is None:
            fail(422, "validation_error", f"unknown queue {queue!r}")


async def _put(request: web.Request, reply: CannedReply, status: int) -> web.Response:
    if any(
        c.shortcut == reply.shortcut and (c.agent or "") == reply.owner
        for c in gateway_of(request).config.canned_replies
    ):
        fail(409, "duplicate", f"the config file has a canned reply /{reply.shortcut}")
    try:
        saved = await _service(request).canned_put(reply)
    except Conflict as exc:
        fail(409, "duplicate", str(exc))
    return web.json_response(saved.to_api(), status=status)


async def create_canned(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "supervisor")
    body = await read_body(request, CannedBody)
    reply = _from_body(principal, body, new_id("cr"))
    _may_change(principal, reply)
    _check_refs(request, reply)
    return await _put(request, reply, 201)


async def _stored(request: web.Request, principal: Principal) -> CannedReply:
    reply_id = request.match_info["id"]
    if reply_id.startswith("config:"):
        if any(r.id == reply_id for r in await _all_canned(request)):
            fail(409, "read_only", "a canned reply of the config file is changed there")
        fail(404, "not_found", f"canned reply {reply_id} not found")
    reply = await workspace_store(gateway_of(request).store).canned_get(reply_id)
    if not _sees(request, principal, reply):
        fail(404, "not_found", f"canned reply {reply_id} not found")
    _may_change(principal, reply)
    return reply


async def update_canned(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "supervisor")
    await _stored(request, principal)
    body = await read_body(request, CannedBody)
    reply = _from_body(principal, body, request.match_info["id"])
    _may_change(principal, reply)
    _check_refs(request, reply)
    return await _put(request, reply, 200)


async def delete_canned(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "supervisor")
    reply = await _stored(request, principal)
    await workspace_store(gateway_of(request).store).canned_delete(reply.id)
    return web.Response(status=204)


async def render_canned(request: web.Request) -> web.Response:
    """A canned reply filled in for one conversation, in its contact's language."""
    principal = authenticate(request)
    require(principal, *STAFF)
    gw = gateway_of(request)
    reply_id = request.match_info["id"]
    reply = next((r for r in await _all_canned(request) if r.id == reply_id), None)
    if reply is None or not _sees(request, principal, reply):
        fail(404, "not_found", f"canned reply {reply_id} not found")
    conv_id = request.query.get("conversation_id")
    if not conv_id:
        fail(400, "invalid_parameter", "give ?conversation_id=")
    conv = await gw.store.get_conversation(conv_id, principal.scope)
    contact = await gw.store.get_contact(conv.contact_id)
    agent_id = principal.agent if principal.role == "agent" else request.query.get("agent")
    agent_cfg = gw.config.agent(agent_id) if agent_id else None
    if agent_id and agent_cfg is None:
        fail(400, "invalid_parameter", f"unknown agent {agent_id!r}")
    lang = canned.language(reply.texts, contact.attributes, gw.config.texts.default_language)
    text = canned.render(
        reply.texts[lang],
        {
            "contact.name": contact.name,
            "agent.name": agent_cfg.name if agent_cfg else None,
            "conversation.id": conv.id,
        },
    )
    return web.json_response(
        {"id": reply.id, "shortcut": reply.shortcut, "language": lang, "text": text}
    )


# --- contact panel -----------------------------------------------------------------------------
async def panel(request: web.Request, principal: Principal, contact: Contact) -> dict[str, Any]:
    """The contact as the console's panel shows it: every conversation across channels
    (that the token sees) and the merges into it."""
    from gateway.api.conversations import render_conversations

    store = workspace_store(gateway_of(request).store)
    convs = await store.contact_conversations(contact.id, principal.scope)
    merges = await store.contact_merges(contact.id)
    return contact.to_api() | {
        "language": contact.attributes.get("language"),
        "segment": contact.attributes.get("segment"),
        "conversations": await render_conversations(request, convs),
        "merges": [m.to_api() for m in merges],
    }


class MergeBody(Body):
    other: str = Field(min_length=1, max_length=100, description="The contact that joins this one.")


async def merge_contacts(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    body = await read_body(request, MergeBody)
    gw = gateway_of(request)
    target = await gw.store.get_contact(request.match_info["id"], principal.scope)
    other = await gw.store.get_contact(body.other, principal.scope)
    try:
        merge = await _service(request).merge(target.id, other.id, _who(principal))
    except Conflict as exc:
        fail(409, "conflict", str(exc))
    contact = await gw.store.get_contact(target.id)
    return web.json_response(
        {
            "merge_id": merge.id,
            "contact": await panel(request, principal, contact),
            "moved": {
                "conversations": merge.conversations,
                "identities": [
                    {"kind": k, "address": a, "verified": v} for k, a, v in other.identities
                ],
            },
        }
    )


async def undo_merge(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    gw = gateway_of(request)
    target = await gw.store.get_contact(request.match_info["id"], principal.scope)
    try:
        await _service(request).undo_merge(target.id, request.match_info["merge_id"])
    except Conflict as exc:
        fail(409, "conflict", str(exc))
    contact = await gw.store.get_contact(target.id)
    return web.json_response(await panel(request, principal, contact))


async def split_identity(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    gw = gateway_of(request)
    try:
        identity = parse_identity(request.match_info["identity"])
    except InvalidIdentity as exc:
        fail(400, "invalid_parameter", str(exc))
    source = await gw.store.get_contact(request.match_info["id"], principal.scope)
    try:
        split = await _service(request).split(source.id, identity)
    except Conflict as exc:
        fail(409, "conflict", str(exc))
    new = await gw.store.get_contact(split.contact_id)
    source = await gw.store.get_contact(source.id)
    return web.json_response(
        {
            "contact": await panel(request, principal, new),
            "source": await panel(request, principal, source),
        }
    )


# --- collision ---------------------------------------------------------------------------------
class ViewingBody(Body):
    typing: bool = False
    leaving: bool = Field(False, description="Gone from the conversation now.")


async def _viewing(request: web.Request, body: ViewingBody | None) -> web.Response:
    principal = authenticate(request)
    require(principal, *STAFF)
    gw = gateway_of(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    viewers = gw.viewers
    if body is None:
        current = await viewers.current(conv.id)
    else:
        who = _who(principal)
        cfg = gw.config.agent(who)
        current = await viewers.heartbeat(
            conv.id, who, cfg.name if cfg else who, body.typing, body.leaving
        )
    return web.json_response({"conversation_id": conv.id, "viewers": [v.to_api() for v in current]})


async def heartbeat(request: web.Request) -> web.Response:
    # A body is required (`{}` is a plain heartbeat), as the API document says.
    return await _viewing(request, await read_body(request, ViewingBody))


async def viewers(request: web.Request) -> web.Response:
    return await _viewing(request, None)


async def serve_file(request: web.Request) -> web.Response:
    """A file an agent sent, by its signed link (no token: the signature is the key)."""
    return await gateway_of(request).files.serve(request)


def add_routes(app: web.Application) -> None:
    from gateway.api.common import GATEWAY

    async def viewers_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(app[GATEWAY].viewers.run(), name="viewers")
        yield
        task.cancel()

    app.cleanup_ctx.append(viewers_ctx)
    r = app.router
    conv = "/v1/conversations/{id}"
    r.add_post(f"{conv}/notes", add_note)
    r.add_get(f"{conv}/notes", list_notes)
    r.add_post(f"{conv}/viewing", heartbeat)
    r.add_get(f"{conv}/viewing", viewers)
    r.add_get("/v1/canned-replies", list_canned)
    r.add_post("/v1/canned-replies", create_canned)
    r.add_put("/v1/canned-replies/{id}", update_canned)
    r.add_delete("/v1/canned-replies/{id}", delete_canned)
    r.add_post("/v1/canned-replies/{id}/render", render_canned)
    r.add_post("/v1/contacts/{id}/merge", merge_contacts)
    r.add_post("/v1/contacts/{id}/merge/{merge_id}/undo", undo_merge)
    r.add_post("/v1/contacts/{id}/identities/{identity}/split", split_identity)
    r.add_get("/files/{id}", serve_file)
