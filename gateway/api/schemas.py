"""What the API answers, as models: the OpenAPI document's response schemas.

The handlers render with the model's `to_api()`; these models describe that shape. They
are not a second truth kept by hand: the suite validates real answers against the document
(schemathesis against the running daemon), so a field that changes here or there fails CI.
Extra fields are allowed (additions are compatible).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.kpis.figures import DEFINITIONS


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(Out):
    code: str = Field(description="Machine-readable: invalid_json, unauthenticated, forbidden ...")
    message: str
    details: list[dict[str, Any]] | None = Field(
        None, description="For 422: one entry per wrong field, `{field, message}`."
    )


class Error(Out):
    """Every error, whatever the status."""

    error: ErrorBody


class Health(Out):
    status: Literal["ok"]


class Readiness(Out):
    ready: bool
    store: Literal["ok", "down"]
    channels: dict[str, str] = Field(
        description="running, degraded: N quarantined, starting, not_ready: ..., auth_failed: ..."
    )
    coordination: Literal["local", "ok", "degraded"] = Field(
        description="How this instance hears of the other instances' work: local (no Redis "
        "configured), ok (Redis reachable), degraded (Redis unreachable: serving from the "
        "store, polling it every second; never a reason to be unready)"
    )
    reason: str | None = Field(
        None, description="Why the store is down: `store unreachable: <error>` (only then)."
    )


class Me(Out):
    name: str
    role: Literal["admin", "agent", "integration", "supervisor"]
    agent: str | None
    agent_name: str | None = Field(None, description="The display name of `agent`.")
    queues: list[str] | None = Field(
        None, description="The queues it sees besides its own conversations; null: every queue."
    )
    reader: str | None = Field(None, description="Whose read markers (unread) it keeps.")


class Sender(Out):
    type: Literal["contact", "agent", "bot", "system"]
    id: str | None


class KbSuggestionRef(Out):
    slug: str
    language: str
    title: str | None = None


class MessageOut(Out):
    id: str
    conversation_id: str
    direction: Literal["in", "out", "note"] = Field(
        description="`note`: an internal note (`private`), never sent to the customer."
    )
    channel: str | None = Field(description="Null for a note.")
    private: bool = Field(False, description="An internal note: agents only.")
    sender: Sender
    text: str
    html: str | None
    subject: str | None
    attachments: list[dict[str, Any]]
    external_id: str | None
    provider_message_id: str | None
    status: str | None = Field(description="Outbound: queued, sent, delivered, read, failed.")
    reason: str | None
    automated: bool
    truncated: bool = Field(
        description="The text was cut to the gateway's limit; the whole is in `raw` (or, "
        "without a raw message, a `full-text.txt` attachment)."
    )
    original_length: int | None = Field(
        description="Length in characters of the text before it was cut; null when not cut."
    )
    raw: str | None = Field(description="Link to the message as the provider sent it.")
    kb_suggestions: list[KbSuggestionRef] = Field(
        default_factory=list,
        description="Knowledge-base articles the chat widget suggested before the visitor "
        'sent this (they answered "no, send my message").',
    )
    via: str | None = Field(
        None,
        description='How an inbound message came other than on its channel: "portal" for '
        "an answer the customer wrote in the customer portal; null otherwise.",
    )
    created_at: str
    updated_at: str


class SlaTargetOut(Out):
    due_at: str | None = Field(description="When the target breaches (null while paused).")
    met_at: str | None
    paused: bool = Field(description="Resolution: paused while waiting on the customer.")
    remaining_seconds: float | None = Field(description="Business seconds left, while paused.")
    warned_at: str | None
    breached_at: str | None


class SlaOut(Out):
    """The conversation's SLA policy and due times, in its queue's business hours."""

    policy: str
    first_response: SlaTargetOut | None = None
    next_response: SlaTargetOut | None = None
    resolution: SlaTargetOut | None = None


class ConversationOut(Out):
    id: str
    contact_id: str
    channel: str
    channel_kind: str
    last_channel: str
    status: Literal["open", "assigned", "pending", "resolved", "closed"]
    queue: str
    assignee: str | None
    priority: Literal["low", "normal", "high", "urgent"]
    required_skills: dict[str, int]
    tags: list[str]
    subject: str | None
    routing: dict[str, Any] = Field(
        description="The rule, strategy and reasons of routing: `reasons` in English, and "
        "`reasons_localized` the same per language (`en`, `de`; rows stored before only "
        "`en`)."
    )
    created_at: str
    updated_at: str
    assigned_at: str | None
    first_response_at: str | None
    resolved_at: str | None
    last_inbound_at: str | None
    sla: SlaOut | None = Field(description="Null when no SLA policy applies.")
    contact_name: str | None = None
    last_message_at: str | None = None
    snoozed_until: str | None = Field(
        None, description="While snoozed (status `pending`): when it wakes."
    )
    unread: int = Field(0, description="Customer messages after the caller's read marker.")
    waiting: bool = Field(False, description="The customer waits for an agent's reply.")


class EscalationStepOut(Out):
    step: int
    after: str = Field(description="How long after the conversation started waiting.")
    does: str
    due_at: float | None
    done: bool


class EscalationOut(Out):
    """Where the conversation stands in its escalation (issue 12)."""

    rule: str | None = Field(description="The rule whose steps apply (null: routing-wide).")
    step: int = Field(description="Steps applied so far (0: none).")
    of: int
    steps: list[EscalationStepOut]
    after_last: Literal["stay", "notify"] | None
    exhausted: bool = False
    waiting: bool
    waiting_since: float
    next_at: float | None = Field(description="When the next step is due (epoch seconds).")


class OfferOut(Out):
    id: str
    conversation_id: str
    agent: str
    queue: str
    status: Literal["pending", "accepted", "rejected", "expired", "withdrawn"]
    created_at: float
    expires_at: float
    answered_at: float | None


class OfferList(Out):
    offers: list[OfferOut]


class ReloadOut(Out):
    reloaded: bool
    changed: list[str] = Field(description="The live sections that changed.")
    problems: list[dict[str, Any]]


class ConversationWithMessages(ConversationOut):
    messages: list[MessageOut]
    escalation: EscalationOut | None = None
    offer: OfferOut | None = Field(None, description="The pending offer, if any.")


class ConversationPage(Out):
    conversations: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class IdentityOut(Out):
    kind: str
    address: str
    verified: bool


class ContactOut(Out):
    id: str
    name: str | None
    attributes: dict[str, str]
    identities: list[IdentityOut]
    created_at: str
    merged_into: str | None


class ContactList(Out):
    contacts: list[ContactOut]


class AgentOut(Out):
    id: str
    name: str
    presence: Literal["online", "away", "offline"]
    skills: dict[str, int]
    queues: list[str]
    capacity: dict[str, int]
    load: dict[str, int]


class AgentList(Out):
    agents: list[AgentOut]


class PresenceOut(Out):
    id: str
    presence: Literal["online", "away", "offline"]


class CapacityOut(Out):
    id: str
    capacity: dict[str, int]


class Accepted(Out):
    ok: bool


LOCALIZED_REASONS = (
    '`reasons` per language: `{"en": [...], "de": [...]}` (English as in `reasons`; '
    "a conversation routed before reasons were kept per language has only `en`)."
)


class Classification(Out):
    queue: str
    priority: str
    required_skills: dict[str, int]
    tags: list[str]
    rule: str | None
    reasons: list[str]
    reasons_localized: dict[str, list[str]] = Field(
        default_factory=dict, description=LOCALIZED_REASONS
    )
    rules: list[str] = Field(
        default_factory=list, description="Every rule that matched (`continue: true`)."
    )
    matches: list[dict[str, Any]] = Field(
        default_factory=list, description="Each matching rule, why, and what it set."
    )
    escalation: dict[str, Any] | None = None


class DecisionOut(Out):
    agent: str | None
    strategy: str | None
    reasons: list[str]
    reasons_localized: dict[str, list[str]] = Field(
        default_factory=dict, description=LOCALIZED_REASONS
    )


class HoursNow(Out):
    calendar: str | None = Field(
        description="The queue's business-hours calendar (null: always open)."
    )
    open: bool
    opens_at: float | None = Field(description="While closed: when it opens (epoch seconds).")
    closes_at: float | None = Field(description="While open: when it closes (epoch seconds).")
    placement: str | None = Field(description="Where it waits while closed (park, overflow).")


class SlaDueNow(Out):
    policy: str
    due: dict[str, float | None] = Field(
        description="Each target's due time for a conversation arriving now (epoch seconds)."
    )


class TimeFacts(Out):
    hours: HoursNow
    sla: SlaDueNow | None


class Explanation(Out):
    classification: Classification
    decision: DecisionOut | None
    time: TimeFacts | None = Field(None, description="Business hours and SLA due times now.")


class QuarantinedOut(Out):
    id: str
    channel: str
    content_type: str
    size: int
    external_id: str | None
    reason: str
    metadata: dict[str, Any]
    status: Literal["new", "retried", "dismissed"]
    retries: int
    message_id: str | None
    created_at: float
    updated_at: float


class QuarantinePage(Out):
    items: list[QuarantinedOut]
    next_cursor: str | None


class InboundAccepted(Out):
    conversation_id: str | None
    message_id: str | None
    duplicate: bool


# --- /v1/stats (issue 13): each figure's definition is gateway.kpis.figures.DEFINITIONS ----------
class TimeFigure(Out):
    """Samples of a duration in seconds; median, p90 and mean are null without a sample."""

    count: int
    median: float | None
    p90: float | None = Field(description="Nearest rank: the ⌈0.9·count⌉-th smallest sample.")
    mean: float | None


class BusinessTimeFigure(TimeFigure):
    business: TimeFigure = Field(
        description="The same samples in business seconds (the queue's open time)."
    )


class FcrFigure(Out):
    resolved: int
    first_contact: int
    rate: float | None


class BacklogFigure(Out):
    open: int
    waiting: int
    oldest_waiting: float | None = Field(description="Seconds.")


class AbandonedFigure(Out):
    count: int
    rate: float | None


class SuggestionsFigure(Out):
    helpful: int
    unhelpful: int
    rate: float | None


class SelfServiceFigure(Out):
    resolved: int
    without_agent: int
    rate: float | None
    suggestions: SuggestionsFigure


class CsatFigure(Out):
    responses: int
    percent: float | None


class NpsFigure(Out):
    responses: int
    promoters: int
    detractors: int
    score: float | None


class CesFigure(Out):
    responses: int
    mean: float | None


class SurveyRateFigure(Out):
    sent: int
    answered: int
    rate: float | None


class SlaTargetFigure(Out):
    met: int
    breached: int
    attainment: float | None = Field(description="met / (met + breached); null: none decided.")


class SlaFigure(SlaTargetFigure):
    breaches: int
    first_response: SlaTargetFigure
    next_response: SlaTargetFigure
    resolution: SlaTargetFigure


def _d(name: str) -> Any:
    """A figure's field, described by its definition."""
    return Field(description=DEFINITIONS[name])


class Figures(Out):
    conversations: int = _d("conversations")
    volume_in: int = _d("volume_in")
    volume_out: int = _d("volume_out")
    first_response: BusinessTimeFigure = _d("first_response")
    next_response: BusinessTimeFigure = _d("next_response")
    resolution: BusinessTimeFigure = _d("resolution")
    first_contact_resolution: FcrFigure = _d("first_contact_resolution")
    handling: TimeFigure = _d("handling")
    awaiting_agent: TimeFigure = _d("awaiting_agent")
    reopened: int = _d("reopened")
    backlog: BacklogFigure | None = _d("backlog")
    abandoned: AbandonedFigure = _d("abandoned")
    self_service: SelfServiceFigure = _d("self_service")
    csat: CsatFigure = _d("csat")
    nps: NpsFigure = _d("nps")
    ces: CesFigure = _d("ces")
    survey_response_rate: SurveyRateFigure = _d("survey_response_rate")
    sla: SlaFigure = _d("sla")


class GroupFigures(Figures):
    key: str | None = Field(
        description="The channel, queue or agent (null: no assignee), the local day "
        "(2026-11-29) or the local hour (2026-11-29T14:00+01:00)."
    )


class StatsReport(Out):
    from_: str = Field(alias="from")
    to: str
    tz: str
    group_by: Literal["channel", "queue", "agent", "day", "hour"] | None
    channel: str | None = Field(description="The `channel` filter, if one was given.")
    generated_at: str
    totals: Figures
    groups: list[GroupFigures] | None = Field(
        description="One entry per group; for day and hour every bucket of the period."
    )


class SurveyResponseOut(Out):
    id: str
    conversation_id: str | None
    contact_id: str | None
    channel: str | None
    kind: Literal["csat", "nps", "ces"]
    score: int | None
    comment: str | None
    agent_id: str | None
    queue: str | None
    sent_at: str | None
    answered_at: str | None


class SurveyResponseList(Out):
    items: list[SurveyResponseOut]


class SurveyOut(Out):
    id: str
    conversation_id: str
    contact_id: str
    channel: str
    kind: Literal["csat", "nps", "ces"]
    score: int | None = Field(description="NULL until answered: CSAT 1-5, NPS 0-10, CES 1-7.")
    comment: str | None
    agent_id: str | None
    queue: str
    language: str
    sent_at: str
    answered_at: str | None


class SurveyPage(Out):
    items: list[SurveyOut]
    next_cursor: str | None


class SurveyOptOut(Out):
    contact_id: str
    opted_out: bool
    at: str | None


# --- the agent workspace (issue 14) -------------------------------------------------------


class ViewCount(Out):
    total: int
    unread: int = Field(description="Conversations with unread customer messages.")


class ViewCounts(Out):
    mine: ViewCount
    unassigned: ViewCount
    all: ViewCount


class StatusCounts(Out):
    open: int
    assigned: int
    pending: int
    snoozed: int
    resolved: int
    closed: int


class ConversationCounts(Out):
    views: ViewCounts
    status: StatusCounts


class ReadOut(Out):
    conversation_id: str
    reader: str
    message_id: str | None
    read_at: str
    unread: int


class SearchResult(Out):
    kind: Literal["message", "contact"]
    conversation_id: str
    message_id: str | None
    contact_id: str
    snippet: str = Field(description="HTML: the text escaped, the matches in <mark> tags.")
    at: str | None
    conversation: ConversationOut


class SearchPage(Out):
    results: list[SearchResult]
    next_cursor: str | None
