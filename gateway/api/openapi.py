"""`GET /v1/openapi.json`: the OpenAPI 3.1 document of the API, generated at run time.

Request bodies are the very pydantic models the handlers validate with; responses are the
models in `gateway.api.schemas`; every operation names the roles that may call it
(`x-roles`) and every error answer is the one envelope. Connectors with HTTP endpoints of
their own for API clients (the `api` channel's inbound) add theirs through
`Connector.openapi()`. A test checks that every route the app serves is in the document,
and the suite fuzzes the running daemon against it (schemathesis).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connectors.base import Connector
from gateway import __version__
from gateway.api import agents, conversations, heartbeat, offers, routing
from gateway.api import schemas as out
from gateway.surveys import web as surveys

ALL = ("admin", "agent", "integration")
ADMIN = ("admin",)
STATS_READERS = ("admin", "supervisor")

_ERRORS = {
    400: "Malformed request: not JSON, not UTF-8, a bad query parameter.",
    401: "Missing or invalid bearer token.",
    403: "The token's role or scope does not allow this.",
    404: "No such id (or not visible to this token).",
    409: "The state does not allow this now.",
    410: "The events after this cursor were pruned (`details.oldest_id` is where the log "
    "starts now).",
    413: "Body larger than server.max_body_bytes.",
    422: "Well-formed, but the fields are wrong (`details` names each).",
    503: "Not ready (store down, or a dependency).",
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


def q(name: str, description: str, required: bool = False, **schema: Any) -> Param:
    return Param(name, description, {"type": "string", **schema}, required)


LIMIT = Param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 500})
CURSOR = q("cursor", "`next_cursor` of the previous page.")


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    summary: str
    roles: tuple[str, ...]  # () = no token needed
    response: type[BaseModel] | str | None  # a str is a non-JSON media type
    ok: int = 200
    body: type[BaseModel] | None = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""
    also: tuple[str, ...] = ()  # further media types of the answer (e.g. text/csv)


CONV = "/v1/conversations/{id}"
OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "Liveness", (), out.Health),
    Op(
        "GET",
        "/readyz",
        "Readiness of the store and each channel",
        (),
        out.Readiness,
        errors=(503,),
        description="503 with the same body when the store is down or a channel is not "
        "running; a channel with quarantined items is `degraded` but ready, and so is an "
        "instance whose Redis is unreachable (`coordination: degraded`).",
    ),
    Op(
        "GET",
        "/metrics",
        "Prometheus exposition",
        (),
        "text/plain",
        errors=(401,),
        description="Needs `auth.metrics_token` (or an admin token) when one is configured.",
    ),
    Op("GET", "/v1/openapi.json", "This document", (), "application/json"),
    Op("GET", "/v1/me", "Who the token is", ALL, out.Me),
    Op(
        "GET",
        "/v1/conversations",
        "Conversations, newest first",
        ALL,
        out.ConversationPage,
        query=(
            q("status", "", enum=["open", "assigned", "pending", "resolved", "closed"]),
            q("queue", ""),
            q("assignee", "An agent id."),
            q("channel", "The channel last used."),
            q("contact", "A contact id."),
            LIMIT,
            CURSOR,
        ),
        description="An agent token sees only what its scope (`auth.visibility`) sees.",
    ),
    Op("GET", CONV, "One conversation with its messages", ALL, out.ConversationWithMessages),
    Op(
        "POST",
        f"{CONV}/messages",
        "Reply through the outbox",
        ALL,
        out.MessageOut,
        ok=202,
        body=conversations.ReplyBody,
        errors=(409,),
        description="An agent replies as itself, on unassigned or its own conversations; an "
        "integration gives `agent` only with `acts_as_agents`.",
    ),
    Op(
        "POST",
        f"{CONV}/assign",
        "Assign to an agent",
        ALL,
        out.ConversationOut,
        body=conversations.AssignBody,
        errors=(409,),
        description="Capacity is enforced unless an admin sets `force`; an agent assigns "
        "only to itself.",
    ),
    Op(
        "POST",
        f"{CONV}/transfer",
        "Back to routing in another queue",
        ALL,
        out.ConversationOut,
        body=conversations.TransferBody,
        errors=(409,),
    ),
    Op("POST", f"{CONV}/resolve", "Resolve", ALL, out.ConversationOut, errors=(409,)),
    Op("POST", f"{CONV}/reopen", "Reopen", ALL, out.ConversationOut, errors=(409,)),
    Op(
        "POST",
        f"{CONV}/typing",
        "An agent is typing",
        ALL,
        out.Accepted,
        ok=202,
        body=conversations.TypingBody,
    ),
    Op("GET", "/v1/agents", "Agents with presence and load", ALL, out.AgentList),
    Op(
        "PUT",
        "/v1/agents/{id}/presence",
        "Set presence",
        ("admin", "agent"),
        out.PresenceOut,
        body=agents.PresenceBody,
    ),
    Op(
        "POST",
        "/v1/agents/{id}/heartbeat",
        "The agent's console is open",
        ("agent",),
        heartbeat.HeartbeatOut,
        description="Sent by the console every third of `ttl` seconds while it is open. "
        "An agent whose heartbeats stop (on every gateway instance) for `ttl` seconds is set "
        "offline; agents that never send one keep the presence they were given.",
    ),
    Op(
        "PUT",
        "/v1/agents/{id}/capacity",
        "Set capacity",
        ADMIN,
        out.CapacityOut,
        body=agents.CapacityBody,
    ),
    Op(
        "GET",
        "/v1/contacts",
        "Find the contact holding an identity",
        ALL,
        out.ContactList,
        query=(
            q(
                "identity",
                "kind:address, e.g. email:a@b.c or phone:+14155550123",
                required=True,
                pattern=r"^[a-z]+:.+",
            ),
        ),
        errors=(404,),
    ),
    Op("GET", "/v1/contacts/{id}", "One contact", ALL, out.ContactOut),
    Op(
        "POST",
        "/v1/contacts/{id}/unmerge",
        "Undo the latest merge of this contact into another",
        ADMIN,
        out.ContactOut,
        errors=(409,),
        description="The contact is on its own again with the conversations the merge "
        "moved; what it had proved is again only a claim.",
    ),
    Op(
        "PATCH",
        "/v1/contacts/{id}",
        "Set contact attributes (e.g. language: de or en; null removes one)",
        ("admin", "integration"),
        out.ContactOut,
        body=surveys.ContactPatchBody,
        errors=(422,),
        description="`language` chooses the language of the texts the gateway writes to "
        "the contact (acknowledgements, surveys).",
    ),
    Op(
        "GET",
        "/v1/contacts/{id}/surveys",
        "Whether the contact opted out of surveys",
        ("admin", "integration"),
        out.SurveyOptOut,
    ),
    Op(
        "PUT",
        "/v1/contacts/{id}/surveys",
        "Opt the contact out of surveys, or back in",
        ("admin", "integration"),
        out.SurveyOptOut,
        body=surveys.OptOutBody,
        errors=(422,),
    ),
    Op(
        "GET",
        "/v1/surveys",
        "Survey responses (CSAT, NPS, CES), newest first",
        ADMIN,
        out.SurveyPage,
        query=(
            q("contact_id", ""),
            q("conversation_id", ""),
            q("kind", "", enum=["csat", "nps", "ces"]),
            LIMIT,
            CURSOR,
        ),
        description="One item per question sent; `score` is null until answered.",
    ),
    Op("GET", "/v1/blobs/{id}", "An attachment or raw message", ALL, "application/octet-stream"),
    Op(
        "POST",
        "/v1/routing/explain",
        "The routing decision for a message or a conversation, changing nothing",
        ALL,
        out.Explanation,
        body=routing.ExplainBody,
        errors=(404,),
        description="Give `channel` (and `text`...) for a sample message, or `conversation` "
        "for a conversation as it stands (404 when it does not exist or is not visible).",
    ),
    Op(
        "GET",
        "/v1/events",
        "The event stream (WebSocket; SSE with Accept: text/event-stream)",
        ALL,
        "text/event-stream",
        query=(Param("since", "Resume after this event id.", {"type": "integer", "minimum": 0}),),
        errors=(410,),
        description="Events `{id, type, at, data}` in id order; `?access_token=` for browsers.",
    ),
    Op(
        "POST",
        f"{CONV}/offer/accept",
        "Accept an offer",
        ALL,
        out.ConversationOut,
        body=offers.OfferAnswerBody,
        errors=(409, 422),
        description="The conversation is assigned to the agent it was offered to. An agent "
        "answers its own offers (the body may be empty); an admin or integration names the agent "
        '(`{"agent"}`). 409 '
        "when the offer expired, was withdrawn or answered already (a late accept).",
    ),
    Op(
        "POST",
        f"{CONV}/offer/reject",
        "Reject an offer",
        ALL,
        out.ConversationOut,
        body=offers.OfferAnswerBody,
        errors=(409, 422),
        description="The conversation is offered to the next agent; this one is skipped "
        "for it for `routing.skip_declined_for`.",
    ),
    Op(
        "GET",
        "/v1/offers",
        "Pending offers",
        ALL,
        out.OfferList,
        query=(q("agent", "An agent id (an agent token sees its own)."),),
    ),
    Op(
        "POST",
        "/v1/admin/reload",
        "Validate the config file and swap it in (also SIGHUP)",
        ADMIN,
        out.ReloadOut,
        errors=(422,),
        description="422 `invalid_config` with every problem (key path, line) when the file "
        "is invalid or changes a section that needs a restart; the running config stays.",
    ),
    Op(
        "GET",
        "/v1/quarantine",
        "Inbound items the gateway could not take",
        ADMIN,
        out.QuarantinePage,
        query=(
            q("status", "", enum=["new", "retried", "dismissed"]),
            q("channel", ""),
            LIMIT,
            CURSOR,
        ),
    ),
    Op("GET", "/v1/quarantine/{id}", "One quarantined item", ADMIN, out.QuarantinedOut),
    Op(
        "GET",
        "/v1/quarantine/{id}/raw",
        "The item as the provider sent it",
        ADMIN,
        "application/octet-stream",
    ),
    Op(
        "POST",
        "/v1/quarantine/{id}/retry",
        "Read it again and ingest it",
        ADMIN,
        out.QuarantinedOut,
        errors=(409, 422),
        description="200 `retried` with its message id; 422 with the new reason when it "
        "still cannot be taken.",
    ),
    Op(
        "POST",
        "/v1/quarantine/{id}/dismiss",
        "Mark it reviewed",
        ADMIN,
        out.QuarantinedOut,
        errors=(409,),
    ),
)

STATS_PERIOD = (
    q(
        "from",
        "Start: a date (local midnight in `tz`) or an ISO date-time; default `to` - 7 days.",
    ),
    q("to", "End (exclusive): a date means through the end of that local day; default now."),
    q("tz", "IANA time zone for dates and for day/hour buckets; default UTC."),
    q(
        "format",
        "csv: the same figures as CSV (also with `Accept: text/csv`).",
        enum=["json", "csv"],
    ),
)
OPERATIONS += (
    Op(
        "GET",
        "/v1/stats",
        "The KPIs of a period, in total and grouped",
        STATS_READERS,
        out.StatsReport,
        query=(
            q("group_by", "", enum=["channel", "queue", "agent", "day", "hour"]),
            q("channel", "Only this channel's figures (e.g. volume per day of one channel)."),
            *STATS_PERIOD,
        ),
        also=("text/csv",),
        description="Computed from the event log's KPI rollups; every figure's definition "
        "is in the `Figures` schema. Durations are calendar seconds. CSV: one row per "
        "group and a `total` row.",
    ),
    Op(
        "GET",
        "/v1/stats/survey-responses",
        "Survey responses sent in a period",
        STATS_READERS,
        out.SurveyResponseList,
        query=STATS_PERIOD,
        also=("text/csv",),
        description="Empty until surveys exist. CSV with `format=csv` or `Accept: text/csv`.",
    ),
)

RESPONSE_MODELS: tuple[type[BaseModel], ...] = (out.Error,)


def _media(response: type[BaseModel] | str | None) -> dict[str, Any]:
    if response is None:
        return {}
    if isinstance(response, str):
        schema: dict[str, Any] = (
            {"type": "object"} if response == "application/json" else {"type": "string"}
        )
        return {"content": {response: {"schema": schema}}}
    return {"content": {"application/json": {"schema": _ref(response)}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _error(status: int) -> dict[str, Any]:
    return {"description": _ERRORS[status], **_media(out.Error)}


def _operation(op: Op) -> dict[str, Any]:
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in op.query
    ]
    statuses = {400, *op.errors}
    if op.roles:
        statuses |= {401}
        if set(op.roles) != set(ALL):
            statuses |= {403}
        statuses |= {403} if op.method != "GET" else set()
    if params and any(p["in"] == "path" for p in params):
        statuses |= {404}
    if op.body is not None:
        statuses |= {413, 422}
    responses: dict[str, Any] = {
        str(op.ok): {"description": op.summary, **_media(op.response)},
    }
    for media in op.also:
        responses[str(op.ok)].setdefault("content", {})[media] = {"schema": {"type": "string"}}
    for status in sorted(statuses):
        if str(status) not in responses:
            responses[str(status)] = _error(status)
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "responses": responses,
        "x-roles": list(op.roles),
        "security": [{"bearer": []}] if op.roles else [],
    }
    if op.description:
        doc["description"] = op.description
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    return doc


def _operation_id(op: Op) -> str:
    words = re.sub(r"[{}]", "", op.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{op.method.lower()}_{words}"


def _components(models: Iterable[tuple[type[BaseModel], str]]) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, mode) for m, mode in models],  # type: ignore[misc]
        ref_template="#/components/schemas/{model}",
    )
    return dict(defs.get("$defs", {}))


def document(extras: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The whole document; `extras` are the connectors' contributions
    (`{"paths": ..., "schemas": ...}`, see `Connector.openapi`)."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: list[tuple[type[BaseModel], str]] = []
    answers: list[tuple[type[BaseModel], str]] = [(m, "serialization") for m in RESPONSE_MODELS]
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        if op.body is not None:
            bodies.append((op.body, "validation"))
        if isinstance(op.response, type):
            answers.append((op.response, "serialization"))
    extra_schemas: dict[str, Any] = {}
    for extra in extras:
        for path, methods in extra.get("paths", {}).items():
            paths.setdefault(path, {}).update(methods)
        extra_schemas.update(extra.get("schemas", {}))
    unique: list[tuple[type[BaseModel], str]] = []
    for model, mode in [*bodies, *answers]:
        if all(model is not m for m, _ in unique):
            unique.append((model, mode))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": __version__,
            "description": "The omnichannel conversation gateway's HTTP API. Every error is "
            '`{"error": {"code", "message", "details"?}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": _components(unique) | extra_schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `auth.tokens` (roles admin, agent, "
                    "integration), or a channel's own token for its inbound endpoint.",
                }
            },
        },
    }


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


def mount(app: web.Application, connectors: Iterable[Connector]) -> None:
    """Build the document once, with the connectors' contributions, before the app is
    frozen (the gateway calls this at start)."""
    app[OPENAPI] = document(c.openapi() for c in connectors)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
