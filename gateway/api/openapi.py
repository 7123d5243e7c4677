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
from gateway.api import (
    agents,
    conversations,
    heartbeat,
    inbox,
    offers,
    outreach,
    routing,
    workspace,
)
from gateway.api import schemas as out
from gateway.api import workspace_schemas as ws
from gateway.api.common import QUERY_PARAMS
from gateway.kb import web as kb
from gateway.portal import web as portal
from gateway.store.inbox import SORT_NAMES
from gateway.surveys import web as surveys

ALL = ("admin", "agent", "integration")
ADMIN = ("admin",)
STATS_READERS = ("admin", "supervisor")
# The agent workspace (issue 14): a supervisor works with conversations too.
WORKSPACE = ("admin", "agent", "integration", "supervisor")

_ERRORS = {
    400: "Malformed request: not JSON, not UTF-8, a bad query parameter, one the operation "
    "does not declare (GETs name it), or a NUL (`%00`) in the path or a query parameter.",
    401: "Missing or invalid bearer token.",
    403: "The token's role or scope does not allow this.",
    404: "No such id (or not visible to this token).",
    409: "The state does not allow this now.",
    410: "The events after this cursor were pruned (`details.oldest_id` is where the log "
    "starts now).",
    413: "Body larger than server.max_body_bytes.",
    422: "Well-formed, but the fields are wrong (`details` names each).",
    429: "Too many requests from this client; `Retry-After` says when to try again.",
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
        "Conversations: filters, sorts, keyset pages, unread counts",
        WORKSPACE,
        out.ConversationPage,
        query=(
            q(
                "status",
                "One or a comma list of open, assigned, pending, snoozed, resolved, closed, "
                "active (open+assigned+pending). `pending` includes the snoozed ones.",
            ),
            q("queue", ""),
            q("assignee", "An agent id, `me` (the token's agent) or `none` (unassigned)."),
            q("channel", "The channel last used."),
            q("contact", "A contact id."),
            q("tag", "Has this tag."),
            q(
                "sla",
                "breached: a running SLA target is past due; warning: due within "
                "`sla.warning`; ok: neither.",
                enum=["breached", "warning", "ok"],
            ),
            q(
                "waiting",
                "true: the customer's last message has no agent reply after it.",
                enum=["true", "false"],
            ),
            q(
                "unread",
                "true: customer messages after the caller's read marker.",
                enum=["true", "false"],
            ),
            q(
                "sort",
                "`-` for descending; ties break on the id. Default -created_at.",
                enum=list(SORT_NAMES),
            ),
            LIMIT,
            CURSOR,
        ),
        description="Any other query parameter is refused (400, naming it). A token sees "
        "what its scope sees: an agent its own and its queues' (`auth.visibility`), a "
        "supervisor its `queues` (all without). Keyset pages: a conversation created between "
        "two pages does not shift the next one. `unread` counts the customer messages after "
        "the caller's read marker (POST .../read).",
    ),
    Op(
        "GET",
        "/v1/conversations/counts",
        "Counts per view and per status, for a sidebar",
        WORKSPACE,
        out.ConversationCounts,
        description="Within what the token sees. mine: active and assigned to the token's "
        "agent; unassigned: open and nobody's; all: active. `unread`: how many of them have "
        "customer messages after the caller's read marker. `snoozed` is part of `pending`.",
    ),
    Op(
        "GET",
        "/v1/search",
        "Full-text search over messages, subjects and contacts",
        WORKSPACE,
        out.SearchPage,
        query=(
            q("q", "Words (all must match, each a prefix; accents ignored).", required=True),
            Param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 100}),
            CURSOR,
        ),
        errors=(400,),
        description="Best first (bm25 on SQLite, ts_rank on PostgreSQL); only conversations "
        "the token sees; verification codes are never indexed. A contact hit (name or "
        "identity) points at the contact's latest visible conversation. Snippets are HTML "
        "with the matches in <mark>.",
    ),
    Op(
        "POST",
        f"{CONV}/read",
        "Mark read up to a message (default: the latest)",
        WORKSPACE,
        out.ReadOut,
        body=inbox.ReadBody,
        description="Stored per reader (the agent, or the token): survives reloads. A "
        "marker never moves back. Event `conversation.read`.",
    ),
    Op(
        "POST",
        f"{CONV}/snooze",
        "Snooze until a time",
        WORKSPACE,
        out.ConversationOut,
        body=inbox.SnoozeBody,
        errors=(409, 422),
        description="Status `pending` with `snoozed_until`; not routed meanwhile. It wakes "
        "(`conversation.woken`) at that time or when the customer writes: back to "
        "`assigned`, or `open` for routing. Event `conversation.snoozed`.",
    ),
    Op(
        "DELETE",
        f"{CONV}/snooze",
        "Wake a snoozed conversation now",
        WORKSPACE,
        out.ConversationOut,
        errors=(409,),
    ),
    Op(
        "POST",
        f"{CONV}/tags",
        "Add tags",
        WORKSPACE,
        out.ConversationOut,
        body=inbox.TagsBody,
        errors=(409, 422),
        description="Event `conversation.tagged` with what was added and the tags now.",
    ),
    Op(
        "DELETE",
        f"{CONV}/tags",
        "Remove tags",
        WORKSPACE,
        out.ConversationOut,
        query=(q("tag", "A tag to remove (repeat for several).", required=True),),
        description="Event `conversation.tagged` with what was removed and the tags now.",
    ),
    Op(
        "POST",
        f"{CONV}/priority",
        "Set the priority",
        WORKSPACE,
        out.ConversationOut,
        body=inbox.PriorityBody,
        errors=(409,),
        description="Event `conversation.priority_changed`; a waiting conversation is "
        "routed in its new order.",
    ),
    Op("GET", CONV, "One conversation with its messages", WORKSPACE, out.ConversationWithMessages),
    Op(
        "POST",
        f"{CONV}/messages",
        "Reply through the outbox",
        WORKSPACE,
        out.MessageOut,
        ok=202,
        body=conversations.ReplyBody,
        errors=(409,),
        description="An agent replies as itself, on unassigned or its own conversations; an "
        "integration gives `agent` only with `acts_as_agents`. `private: true` keeps an "
        "internal note instead (answered as `POST …/notes` does, with 202). Files: send "
        "multipart/form-data (the body's fields as form fields, each file a part named "
        "`file`; not described as a schema here); the core degrades them to what the "
        "channel carries (email attaches them, other channels get a signed download link).",
    ),
    Op(
        "POST",
        f"{CONV}/assign",
        "Assign to an agent",
        WORKSPACE,
        out.ConversationOut,
        body=conversations.AssignBody,
        errors=(409,),
        description="Capacity is enforced unless an admin sets `force`; an agent assigns "
        "only to itself; an admin, supervisor or integration to any agent.",
    ),
    Op(
        "POST",
        f"{CONV}/transfer",
        "To another queue (back to routing there) or to an agent",
        WORKSPACE,
        out.ConversationOut,
        body=conversations.TransferBody,
        errors=(409, 422),
        description="Give `queue`, `agent` or both (queue first). To an agent: assigned to "
        "it, capacity enforced; an agent may hand its own conversation to a colleague.",
    ),
    Op("POST", f"{CONV}/resolve", "Resolve", WORKSPACE, out.ConversationOut, errors=(409,)),
    Op("POST", f"{CONV}/reopen", "Reopen", WORKSPACE, out.ConversationOut, errors=(409,)),
    Op(
        "POST",
        f"{CONV}/typing",
        "An agent is typing",
        WORKSPACE,
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
    Op(
        "GET",
        "/v1/contacts/{id}",
        "One contact with its conversations on every channel and its merges",
        ALL,
        ws.ContactPanel,
    ),
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
        "Set contact attributes (e.g. language: de or en; null removes one) and name",
        ("admin", "integration", "agent", "supervisor"),
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
        query=(
            Param("since", "Resume after this event id.", {"type": "integer", "minimum": 0}),
            q("access_token", "The bearer token, for browsers (WebSocket, EventSource)."),
        ),
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
        "Start: a date (local midnight in `tz`) or an ISO date-time; default `to` - 7 days "
        "(not before 1970). `from` and `to` lie between 1970-01-01 and 9998-12-31.",
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
    Op(
        "GET",
        "/v1/kb/search",
        "Search the knowledge base",
        (),
        kb.KbSearchOut,
        query=(
            q("q", "The search text (at most 200 characters).", required=True),
            q("lang", "Only articles in this language.", enum=["de", "en"]),
            Param("limit", "Results at most.", {"type": "integer", "minimum": 1, "maximum": 20}),
        ),
        errors=(400, 401, 404, 429),
        description="Ranked articles (stems, German compound parts, typos) with HTML "
        "snippets (escaped, matches in `<mark>`). Without a token: public articles only, "
        "`knowledge_base.search_per_minute` per client address; an admin, agent or "
        "integration token also finds internal ones.",
    ),
)

# Issue 14: the agent workspace (gateway/api/workspace.py).
CANNED_WRITERS = ("admin", "agent", "supervisor")
OPERATIONS += (
    Op(
        "POST",
        f"{CONV}/notes",
        "Add an internal note",
        WORKSPACE,
        ws.NoteOut,
        ok=201,
        body=workspace.NoteBody,
        errors=(422,),
        description="Agents only: never queued in the outbox, never sent to a channel, never "
        "in the widget's history. `message.created` (private) on the stream, and "
        "`agent.mentioned` for each `@agent` in the text or in `mentions`. Also "
        "`POST …/messages` with `private: true`. Files: multipart/form-data as for a reply.",
    ),
    Op("GET", f"{CONV}/notes", "The internal notes, oldest first", WORKSPACE, ws.NoteList),
    Op(
        "POST",
        f"{CONV}/viewing",
        "I am viewing (or typing in) this conversation: a heartbeat",
        WORKSPACE,
        ws.ViewingOut,
        body=workspace.ViewingBody,
        description="Send every ~10 s; a viewer is forgotten 30 s after its last heartbeat. "
        "Every change is the live-only event `conversation.viewing` with the viewers. "
        "`leaving: true` leaves at once. With several instances (`coordination.redis`) "
        "every instance lists every viewer and streams every change.",
    ),
    Op("GET", f"{CONV}/viewing", "Who is viewing it now", WORKSPACE, ws.ViewingOut),
    Op(
        "GET",
        "/v1/canned-replies",
        "Canned replies the token may use",
        WORKSPACE,
        ws.CannedReplyList,
        query=(
            q("q", "In the shortcut or the title."),
            q("queue", "Team replies of this queue (and the personal ones)."),
        ),
        description="An agent sees the team replies of its queues and its own personal ones; "
        "those of the config file (`canned_replies:`) too, read-only.",
    ),
    Op(
        "POST",
        "/v1/canned-replies",
        "Add a canned reply",
        CANNED_WRITERS,
        ws.CannedReplyOut,
        ok=201,
        body=workspace.CannedBody,
        errors=(409,),
        description="Personal: an agent for itself (an admin names `agent`). Team: admin or "
        "supervisor. 409 `duplicate` when the owner has the shortcut already.",
    ),
    Op(
        "PUT",
        "/v1/canned-replies/{id}",
        "Replace a canned reply",
        CANNED_WRITERS,
        ws.CannedReplyOut,
        body=workspace.CannedBody,
        errors=(409,),
        description="409 `read_only` for one of the config file.",
    ),
    Op(
        "DELETE",
        "/v1/canned-replies/{id}",
        "Remove a canned reply",
        CANNED_WRITERS,
        None,
        ok=204,
        errors=(409,),
    ),
    Op(
        "POST",
        "/v1/canned-replies/{id}/render",
        "A canned reply filled in for a conversation",
        WORKSPACE,
        ws.CannedRendered,
        query=(
            q("conversation_id", "The conversation it answers.", required=True),
            q("agent", "Admin: whose name fills {{agent.name}} (an agent token: itself)."),
        ),
        description="In the contact's language (its `language` attribute) when the reply has "
        "it, else the default language, else English. Fills {{contact.name}}, "
        "{{agent.name}}, {{conversation.id}}.",
    ),
    Op(
        "POST",
        "/v1/contacts/{id}/merge",
        "Merge another contact into this one",
        WORKSPACE,
        ws.MergeResult,
        body=workspace.MergeBody,
        errors=(409,),
        description="`other` joins this contact with its identities and conversations; "
        "recorded as `contact.merged` (what moved) and undoable.",
    ),
    Op(
        "POST",
        "/v1/contacts/{id}/merge/{merge_id}/undo",
        "Undo a merge into this contact",
        WORKSPACE,
        ws.ContactPanel,
        errors=(409,),
        description="The other contact stands alone again with its identities and the "
        "conversations the merge moved (`contact.unmerged`). 409 when undone already.",
    ),
    Op(
        "POST",
        "/v1/contacts/{id}/identities/{identity}/split",
        "Split one identity off into a new contact",
        WORKSPACE,
        ws.SplitResult,
        errors=(409,),
        description="`identity` is kind:address (URL-encoded). The new contact takes the "
        "conversations that answer to that identity (`contact.split`). 409 for the only one.",
    ),
    Op(
        "GET",
        "/files/{id}",
        "A file an agent sent, by the signed link in the message",
        (),
        "application/octet-stream",
        query=(
            q("exp", "Expiry (epoch seconds), as in the link.", required=True),
            q("sig", "The link's signature.", required=True),
        ),
        errors=(403,),
        description="For channels that cannot carry files: the customer gets this link. No "
        "token; 403 when the signature is wrong or the link expired.",
    ),
)

# Issue 15: proactive outreach (gateway/api/outreach.py).
OPERATIONS += (
    Op(
        "POST",
        "/v1/conversations",
        "Start a conversation with a contact (proactive outreach)",
        WORKSPACE,
        out.ConversationWithMessages,
        ok=201,
        body=outreach.StartBody,
        errors=(403, 409, 422),
        description="To a known contact (`contact_id`) or an address (`to`; a new contact "
        "when nobody has it) on a configured channel that can write first: email (needs a "
        "`subject`), SMS, Telegram only to a user who wrote to the bot on that channel, "
        "WhatsApp only with an approved `template`; never web chat. The first message goes "
        "through the outbox (`status` queued, then sent or failed with a reason) and the "
        "customer's answer threads into the conversation. It is assigned to the calling "
        "agent (or `assign_to`; `null` routes it by the rules, in `queue` when given). "
        "422 codes: unknown_channel, channel_cannot_start, template_required, "
        "template_not_supported, subject_required, invalid_address, wrong_address_kind, "
        "unknown_contact, no_address, never_wrote, opted_out (contact attribute "
        "`do_not_contact: true`), unknown_agent, unknown_queue. 403 forbidden: an agent "
        "token assigns only to itself; 403 queue_scope: a caller limited to some queues "
        "names another `queue`, or the rules would put the conversation in a queue it does "
        "not see and it is not the caller's own (nothing is stored or sent). 409 "
        "conversation_exists: the contact has an active conversation (its id is in the "
        "message when the caller sees it); reply there.",
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
    frozen (the gateway calls this at start); the query parameters it declares are the
    ones the API's GETs accept (`query_middleware`)."""
    doc = document(c.openapi() for c in connectors)
    app[OPENAPI] = doc
    app[QUERY_PARAMS] = {
        (method.upper(), path): frozenset(
            p["name"] for p in op.get("parameters", ()) if p["in"] == "query"
        )
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


# Issue 15: the customer portal (gateway/portal/). The pages under /portal/ are the
# customer's, not the API.
PORTAL_ROLES = ("admin", "agent", "supervisor", "integration")
OPERATIONS += (
    Op(
        "POST",
        "/v1/contacts/{id}/portal-link",
        "A signed link to the customer portal for this contact",
        PORTAL_ROLES,
        portal.PortalLinkOut,
        ok=201,
        errors=(409,),
        description="The customer opens it without a password and sees its conversations "
        "on every channel (contacts merged into it included), and can answer them. Valid "
        "for `portal.link_ttl`; `DELETE` revokes every link given out. 409 "
        "`portal_disabled` unless `portal.enabled`; 403 `portal_scope` for a caller limited "
        "to some queues when the contact has conversations it does not see (the link would "
        "show them).",
    ),
    Op(
        "DELETE",
        "/v1/contacts/{id}/portal-link",
        "Revoke every portal link given out for this contact",
        PORTAL_ROLES,
        portal.PortalRevokedOut,
        description="Every link that shows the contact's conversations: merges are followed "
        "to the contact holding them (`contact_id`), whose links and those of every contact "
        "merged into it stop working. A revoked link answers 410.",
    ),
    Op(
        "POST",
        f"{CONV}/portal-link",
        "Send the customer a portal link in this conversation",
        PORTAL_ROLES,
        portal.PortalLinkSentOut,
        ok=202,
        errors=(409,),
        description="A message in the customer's language on the conversation's channel, "
        "through the outbox like a reply (sender `system`: not the agent's answer, no first "
        "response). 403 `portal_scope` as for `POST /v1/contacts/{id}/portal-link`.",
    ),
)
