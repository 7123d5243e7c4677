"""The HTTP API (DESIGN §4): aiohttp handlers over the gateway's services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.http import ApiError, fail, printable, read_json, validation_details
from gateway.api.auth import Authenticator, Principal, require
from gateway.api.visibility import StreamFilter
from gateway.eventlog import POLL_INTERVAL, CursorExpired, LogReader, check_cursor
from gateway.identity import InvalidIdentity, parse_identity
from gateway.metrics import METRICS
from gateway.model import Event, event_json
from gateway.store.base import Conflict, ConversationFilter, Forbidden, NotFound, OutboundRequest
from router import MessageFacts

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("switchboard.api")

M = TypeVar("M", bound=BaseModel)

# How soon a stream holding events back behind a hole in the ids looks again.
GAP_POLL = 0.05

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as the JSON envelope; nothing leaks a traceback."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body too large"
        err = ApiError(exc.status, code, message)
        if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110)
            err.headers["Allow"] = exc.headers["Allow"]
        raise err from None
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except asyncio.CancelledError:
        raise
    except (RecursionError, UnicodeError) as exc:
        # What a client's malformed input leads to when a handler missed a check: nesting
        # too deep for a recursive parser, bytes that are not UTF-8 (lone surrogates).
        # The client's fault, so a 400; logged so that the missing check gets added.
        log.warning(
            "malformed input reached a handler",
            extra={"path": printable(request.path), "error": type(exc).__name__},
        )
        raise ApiError(400, "bad_request", f"malformed request ({type(exc).__name__})") from None
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        raise ApiError(500, "internal", "internal error; see the gateway log") from None


def _gw(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def _auth(request: web.Request, allow_query: bool = False) -> Principal:
    return request.app[AUTH].authenticate(request, allow_query)


class Body(BaseModel):
    # Strict: `true` is not a capacity of 1, "5" is not a number.
    model_config = ConfigDict(extra="forbid", strict=True)


class ReplyBody(Body):
    text: str = Field(min_length=1, max_length=100_000)
    html: str | None = Field(None, max_length=1_000_000)
    subject: str | None = Field(None, max_length=998)
    agent: str | None = None


class AssignBody(Body):
    agent: str
    force: bool = False


class TransferBody(Body):
    queue: str


class TypingBody(Body):
    typing: bool = True


class PresenceBody(Body):
    status: str = Field(pattern="^(online|away|offline)$")


class CapacityBody(Body):
    capacity: dict[str, Annotated[int, Field(ge=0)]]


class ExplainBody(Body):
    channel: str
    text: str = ""
    subject: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


async def _body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request, _gw(request).config.server.max_body_bytes)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fail(
            422,
            "validation_error",
            "the request body is not valid",
            validation_details(exc.errors()),
        )


async def me(request: web.Request) -> web.Response:
    """Who the token is: lets a console or integration sign in with just a token."""
    principal = _auth(request)
    return web.json_response(
        {"name": principal.name, "role": principal.role, "agent": principal.agent}
    )


# --- health and metrics ----------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = _gw(request)
    store_ok = await gw.store.ping()
    channels = await gw.channel_health() if store_ok else gw.channel_states()
    # A degraded channel still serves: it is not a reason to take this instance out.
    ready = store_ok and all(
        state == "running" or state.startswith("degraded") for state in channels.values()
    )
    return web.json_response(
        {"ready": ready, "store": "ok" if store_ok else "down", "channels": channels},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    if not request.app[AUTH].metrics_allowed(request):
        fail(401, "unauthenticated", "GET /metrics needs the metrics token (auth.metrics_token)")
    body = generate_latest(METRICS.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- conversations ---------------------------------------------------------------------------
def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid_parameter", f"{name} must be an integer")
    if not lo <= value <= hi:
        fail(400, "invalid_parameter", f"{name} must be between {lo} and {hi}")
    return value


async def list_conversations(request: web.Request) -> web.Response:
    principal = _auth(request)
    q = request.query
    status = q.get("status")
    if status is not None and status not in ("open", "assigned", "pending", "resolved", "closed"):
        fail(400, "invalid_parameter", "status must be open, assigned, pending, resolved or closed")
    flt = ConversationFilter(
        status=status,
        queue=q.get("queue"),
        assignee=q.get("assignee"),
        channel=q.get("channel"),
        contact_id=q.get("contact"),
        limit=_int(request, "limit", 50, 1, 500),
        cursor=q.get("cursor"),
        scope=principal.scope,
    )
    rows, cursor = await _gw(request).store.list_conversations(flt)
    return web.json_response({"conversations": [c.to_api() for c in rows], "next_cursor": cursor})


async def get_conversation(request: web.Request) -> web.Response:
    principal = _auth(request)
    gw = _gw(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    messages = await gw.store.messages(conv.id, principal.scope)
    return web.json_response(conv.to_api() | {"messages": [m.to_api() for m in messages]})


async def reply(request: web.Request) -> web.Response:
    principal = _auth(request)
    require(principal, "admin", "agent", "integration")
    body = await _body(request, ReplyBody)
    gw = _gw(request)
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
        )
    )
    return web.json_response(message.to_api(), status=202)


async def assign(request: web.Request) -> web.Response:
    principal = _auth(request)
    body = await _body(request, AssignBody)
    gw = _gw(request)
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
    return web.json_response(conv.to_api())


async def transfer(request: web.Request) -> web.Response:
    principal = _auth(request)
    body = await _body(request, TransferBody)
    gw = _gw(request)
    if gw.config.routing.queue(body.queue) is None:
        fail(422, "validation_error", f"unknown queue {body.queue!r}")
    conv = await gw.services.transfer(
        request.match_info["id"], body.queue, principal.name, principal.scope
    )
    return web.json_response(conv.to_api())


async def resolve(request: web.Request) -> web.Response:
    principal = _auth(request)
    gw = _gw(request)
    conv = await gw.services.resolve(request.match_info["id"], principal.name, principal.scope)
    return web.json_response(conv.to_api())


async def reopen(request: web.Request) -> web.Response:
    principal = _auth(request)
    gw = _gw(request)
    conv = await gw.services.reopen(request.match_info["id"], principal.name, principal.scope)
    return web.json_response(conv.to_api())


async def typing(request: web.Request) -> web.Response:
    """An agent is typing: shown to the customer where the channel can, and on the stream."""
    principal = _auth(request)
    body = await _body(request, TypingBody)
    gw = _gw(request)
    conv = await gw.store.get_conversation(request.match_info["id"], principal.scope)
    if principal.scope is not None and not principal.scope.may_act(conv):
        fail(403, "forbidden", f"the conversation is assigned to {conv.assignee}")
    await gw.agent_typing(conv, principal.agent or principal.name, body.typing)
    return web.json_response({"ok": True}, status=202)


# --- agents ----------------------------------------------------------------------------------
async def list_agents(request: web.Request) -> web.Response:
    _auth(request)
    gw = _gw(request)
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
    if _gw(request).config.agent(agent_id) is None:
        fail(404, "not_found", f"agent {agent_id} not found")
    return agent_id


async def set_presence(request: web.Request) -> web.Response:
    principal = _auth(request)
    agent_id = _agent_target(request, principal)
    body = await _body(request, PresenceBody)
    gw = _gw(request)
    await gw.services.set_presence(agent_id, body.status)
    return web.json_response({"id": agent_id, "presence": body.status})


async def set_capacity(request: web.Request) -> web.Response:
    principal = _auth(request)
    require(principal, "admin")
    agent_id = _agent_target(request, principal)
    body = await _body(request, CapacityBody)
    if any(v < 0 for v in body.capacity.values()):
        fail(422, "validation_error", "capacity values must be >= 0")
    gw = _gw(request)
    await gw.services.set_capacity(agent_id, body.capacity)
    return web.json_response({"id": agent_id, "capacity": body.capacity})


# --- contacts --------------------------------------------------------------------------------
async def get_contact(request: web.Request) -> web.Response:
    principal = _auth(request)
    contact = await _gw(request).store.get_contact(request.match_info["id"], principal.scope)
    return web.json_response(contact.to_api())


async def find_contact(request: web.Request) -> web.Response:
    principal = _auth(request)
    raw = request.query.get("identity")
    if not raw:
        fail(400, "invalid_parameter", "give ?identity=kind:address, e.g. email:a@b.c")
    try:
        identity = parse_identity(raw)
    except InvalidIdentity as exc:
        fail(400, "invalid_parameter", str(exc))
    contact = await _gw(request).store.find_contact(identity, principal.scope)
    return web.json_response({"contacts": [contact.to_api()]})


async def unmerge_contact(request: web.Request) -> web.Response:
    """Undo a merge (admin): the contact is on its own again, with the conversations the
    merge moved, and what it had proved is again only a claim."""
    principal = _auth(request)
    require(principal, "admin")
    gw = _gw(request)
    contact_id = request.match_info["id"]
    await gw.services.unmerge(contact_id)
    contact = await gw.store.get_contact(contact_id)
    return web.json_response(contact.to_api())


async def get_blob(request: web.Request) -> web.Response:
    principal = _auth(request)
    content_type, data = await _gw(request).store.get_blob(
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


# --- routing ---------------------------------------------------------------------------------
async def explain(request: web.Request) -> web.Response:
    _auth(request)
    body = await _body(request, ExplainBody)
    gw = _gw(request)
    channel = next((c for c in gw.config.channels if c.name == body.channel), None)
    if channel is None:
        fail(422, "validation_error", f"unknown channel {body.channel!r}")
    facts = MessageFacts(channel.name, channel.type, body.text, body.subject, body.attributes)
    return web.json_response(await gw.explain(facts))


# --- events ----------------------------------------------------------------------------------
def _since(request: web.Request) -> int | None:
    # A reconnecting EventSource repeats its URL (?since=...) and adds Last-Event-ID, which
    # is where it really is.
    raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid_parameter", "since must be an event id (integer)")
    if value < 0:
        fail(400, "invalid_parameter", "since must be >= 0")
    return value


async def _replay_then_live(
    gw: Gateway, since: int | None, emit: Any, principal: Principal | None = None
) -> None:
    """Send the stored events after `since` (or from now), then each new one as it is
    committed, read from the store's log: none skipped, none twice (gateway/eventlog.py).
    The bus only wakes the reader, and brings the live-only events. Only the events the
    principal may see. Returns when the gateway stops or the cursor falls off the log."""
    if principal is not None and (principal.scope is not None or principal.role != "admin"):
        shown = StreamFilter(gw.store, principal)

        async def filtered(event: Event) -> None:
            if await shown.allows(event):
                await emit(event)

        return await _replay_then_live(gw, since, filtered)
    with gw.bus.subscribe() as sub:
        start = since if since is not None else await gw.store.last_event_id()
        reader = LogReader(gw.store, start)
        live: list[Event] | None = []
        while live is not None:
            try:
                batch = await reader.read(500)
            except CursorExpired as exc:
                log.info(
                    "event stream fell off the pruned log; closed",
                    extra={"cursor": exc.cursor, "oldest_id": exc.oldest},
                )
                return
            for event in batch:
                await emit(event)
            for event in live:
                await emit(event)
            if len(batch) == 500 and not sub.closed:
                live = []
                continue  # more to replay: no waiting (unless the gateway is stopping)
            live = await sub.wait(GAP_POLL if reader.holding else POLL_INTERVAL)


async def events(request: web.Request) -> web.StreamResponse:
    principal = _auth(request, allow_query=True)
    gw = _gw(request)
    since = _since(request)
    if since is not None:
        try:
            await check_cursor(gw.store, since)
        except CursorExpired as exc:
            fail(
                410,
                "cursor_expired",
                f"{exc}: resume with since={exc.oldest - 1} (or without since, from now)",
                {"oldest_id": exc.oldest},
            )
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _sse(request, gw, since, principal)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        fail(400, "websocket_required", "open a WebSocket, or ask for Accept: text/event-stream")
    await ws.prepare(request)

    async def emit(event: Event) -> None:
        await ws.send_str(event_json(event))

    pump = asyncio.create_task(_replay_then_live(gw, since, emit, principal))
    gw.track(ws)
    try:
        reader = asyncio.create_task(_drain(ws))
        done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done and not ws.closed:
            await ws.close(code=4000, message=b"event stream lagged or closed; resume with ?since=")
    finally:
        for task in (pump, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gw.untrack(ws)
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return


async def _sse(
    request: web.Request, gw: Gateway, since: int | None, principal: Principal
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)

    async def emit(event: Event) -> None:
        data = event_json(event)
        head = f"id: {event.id}\n" if event.durable else ""
        await resp.write(f"{head}event: {event.type}\ndata: {data}\n\n".encode())

    pump = asyncio.create_task(_replay_then_live(gw, since, emit, principal))
    try:
        while not pump.done():
            await asyncio.wait({pump}, timeout=15)
            if not pump.done():
                await resp.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return resp


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/v1/me", me)
    r.add_get("/v1/conversations", list_conversations)
    r.add_get("/v1/conversations/{id}", get_conversation)
    r.add_post("/v1/conversations/{id}/messages", reply)
    r.add_post("/v1/conversations/{id}/assign", assign)
    r.add_post("/v1/conversations/{id}/transfer", transfer)
    r.add_post("/v1/conversations/{id}/resolve", resolve)
    r.add_post("/v1/conversations/{id}/reopen", reopen)
    r.add_post("/v1/conversations/{id}/typing", typing)
    r.add_get("/v1/agents", list_agents)
    r.add_put("/v1/agents/{id}/presence", set_presence)
    r.add_put("/v1/agents/{id}/capacity", set_capacity)
    r.add_get("/v1/contacts", find_contact)
    r.add_get("/v1/contacts/{id}", get_contact)
    r.add_post("/v1/contacts/{id}/unmerge", unmerge_contact)
    r.add_get("/v1/blobs/{id}", get_blob)
    r.add_post("/v1/routing/explain", explain)
    r.add_get("/v1/events", events)
    from gateway import console
    from gateway.api import openapi, quarantine

    r.add_get("/v1/openapi.json", openapi.openapi_json)
    quarantine.add_routes(app)
    console.add_routes(app)
