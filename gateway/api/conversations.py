"""`/v1/conversations`: list, read, reply, assign, transfer, resolve, reopen, typing; and
`/v1/blobs` (the attachments of their messages). Changes go through `gw.services`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api import inbox, workspace
from gateway.api.auth import require
from gateway.api.common import Body, MessageText, authenticate, gateway_of, read_body
from gateway.model import Conversation
from gateway.store.base import OutboundRequest, escalation_store
from gateway.time.escalation import escalation_of
from gateway.workspace.attachments import read_upload


async def _render(request: web.Request, convs: list[Conversation]) -> list[dict[str, Any]]:
    """Conversations as the API shows them: SLA due times (issue 12), and the workspace's
    fields for the caller (issue 14: gateway/api/inbox.py)."""
    return await inbox.render(request, authenticate(request), convs)


# The contact panel renders a contact's conversations as the list does (gateway/api/workspace.py).
render_conversations = _render


async def _one(request: web.Request, conv: Conversation) -> web.Response:
    return web.json_response((await _render(request, [conv]))[0])


class ReplyBody(Body):
    text: MessageText
    html: str | None = Field(None, max_length=1_000_000)
    subject: str | None = Field(None, max_length=998)
    agent: str | None = None
    private: bool = Field(
        False, description="An internal note (as `POST …/notes`): agents only, never sent."
    )
    mentions: list[str] = Field(
        default_factory=list, max_length=50, description="Notes: agents to notify."
    )


class AssignBody(Body):
    agent: str
    force: bool = False


class TransferBody(Body):
    queue: str | None = Field(None, description="Back to routing in this queue.")
    agent: str | None = Field(
        None, description="Assign to this agent (after the queue, when both are given)."
    )


class TypingBody(Body):
    typing: bool = True


# Filters, sorts, keyset pages, unread: gateway/api/inbox.py (issue 14).
list_conversations = inbox.list_conversations


async def get_conversation(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    messages = await gw.store.messages(conv.id, principal.scope)
    [out] = await _render(request, [conv])
    # Issue 14: the internal notes on the same timeline, marked private.
    timeline = [m.to_api() | {"private": False} for m in messages]
    timeline += await workspace.timeline(request, conv.id)
    timeline.sort(key=lambda m: (m["created_at"], m["id"]))
    # Issue 12: its escalation step and its pending offer.
    escalation = await escalation_of(gw.store, gw.config.routing, conv.id)
    offers = await escalation_store(gw.store).offers(conversation_id=conv.id)
    return web.json_response(
        out
        | {
            "messages": timeline,
            "escalation": escalation,
            "offer": offers[0].to_api() if offers else None,
        }
    )


async def reply(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "agent", "integration", "supervisor")
    body, uploads = await read_upload(request, ReplyBody)
    attachments, blobs = uploads.stored()
    if body.private:  # an internal note (issue 14)
        return await workspace.create_note(
            request, principal, body.text, body.mentions, attachments, blobs, status=202
        )
    gw = gateway_of(request)
    if principal.role == "agent" and body.agent not in (None, principal.agent):
        fail(403, "forbidden", "an agent token replies only as its own agent")
    if principal.role == "integration" and body.agent is not None and not principal.acts_as_agents:
        fail(
            403,
            "forbidden",
            "this integration token replies as itself; give it `acts_as_agents: true` to "
            "reply in an agent's name",
        )
    agent = principal.agent if principal.role == "agent" else body.agent
    if agent is not None and gw.config.agent(agent) is None:
        fail(422, "validation_error", f"unknown agent {agent!r}")
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    if conv.last_channel not in gw.connectors:
        fail(
            409, "channel_unavailable", f"channel {conv.last_channel!r} is not configured any more"
        )
    message = await gw.services.reply(
        OutboundRequest(
            conversation_id=conv.id,
            text=body.text,
            html=body.html,
            subject=body.subject,
            sender_type="agent",
            sender_id=agent or principal.name,
            now=gw.clock(),
            scope=principal.scope,
            attachments=attachments,
            blobs=blobs,
        )
    )
    return web.json_response(message.to_api(), status=202)


async def assign(request: web.Request) -> web.Response:
    principal = authenticate(request)
    body = await read_body(request, AssignBody)
    gw = gateway_of(request)
    if principal.role == "agent" and body.agent != principal.agent:
        fail(403, "forbidden", "an agent token assigns only to its own agent")
    if body.force and principal.role != "admin":
        fail(403, "forbidden", "only an admin may force an assignment over capacity")
    agent_cfg = gw.config.agent(body.agent)
    if agent_cfg is None:
        fail(404, "not_found", f"agent {body.agent} not found")
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    capacity = None
    if not body.force:
        states = {s.id: s for s in await gw.store.agent_states()}
        state = states.get(body.agent)
        capacity = (
            state.capacity_for(conv.channel_kind)
            if state
            else agent_cfg.capacity_for(conv.channel_kind)
        )
    conv = await gw.services.assign(conv.id, body.agent, capacity, principal.name, principal.scope)
    return await _one(request, conv)


async def transfer(request: web.Request) -> web.Response:
    """To a queue (routing takes it there), to an agent (a hand-over: an agent may give its
    own conversation to a colleague; capacity counts), or both."""
    principal = authenticate(request)
    body = await read_body(request, TransferBody)
    gw = gateway_of(request)
    if body.queue is None and body.agent is None:
        fail(422, "validation_error", "give the queue or the agent to transfer to")
    if body.queue is not None and gw.config.routing.queue(body.queue) is None:
        fail(422, "validation_error", f"unknown queue {body.queue!r}")
    agent_cfg = gw.config.agent(body.agent) if body.agent is not None else None
    if body.agent is not None and agent_cfg is None:
        fail(422, "validation_error", f"unknown agent {body.agent!r}")
    conv_id = request.match_info["id"]
    if body.queue is not None:
        conv = await gw.services.transfer(conv_id, body.queue, principal.name, principal.scope)
    if body.agent is not None and agent_cfg is not None:
        conv = await gw.store.get_conversation(conv_id, principal.scope)
        states = {s.id: s for s in await gw.store.agent_states()}
        state = states.get(body.agent)
        capacity = (
            state.capacity_for(conv.channel_kind)
            if state
            else agent_cfg.capacity_for(conv.channel_kind)
        )
        conv = await gw.services.assign(
            conv_id, body.agent, capacity, principal.name, principal.scope
        )
    return await _one(request, conv)


async def resolve(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    conv = await gw.services.resolve(request.match_info["id"], principal.name, principal.scope)
    return await _one(request, conv)


async def reopen(request: web.Request) -> web.Response:
    principal = authenticate(request)
    gw = gateway_of(request)
    conv = await gw.services.reopen(request.match_info["id"], principal.name, principal.scope)
    return await _one(request, conv)


async def typing(request: web.Request) -> web.Response:
    """An agent is typing: shown to the customer where the channel can, and on the stream."""
    principal = authenticate(request)
    body = await read_body(request, TypingBody)
    gw = gateway_of(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    if principal.scope is not None and not principal.scope.may_act(conv):
        fail(403, "forbidden", f"the conversation is assigned to {conv.assignee}")
    await gw.agent_typing(conv, principal.agent or principal.name, body.typing)
    return web.json_response({"ok": True}, status=202)


async def get_blob(request: web.Request) -> web.Response:
    principal = authenticate(request)
    content_type, data = await gateway_of(request).store.get_blob(
        request.match_info["id"], principal.scope
    )
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": "attachment",
            "X-Content-Type-Options": "nosniff",
        },
    )
