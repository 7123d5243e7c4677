"""The store interface: every state change is one atomic operation that also appends its
events, so a consumer resuming with `?since=` never sees a change without its event.

The interface is split by role (`ConversationStore`, `OutboxStore`, `RoutingStore`,
`EventLogStore`, `KeyValueStore`, `BlobStore`, `QuarantineStore`); `Store` is all of them.
A caller that needs one role asks for that role, so that a backend can mix, e.g.
PostgreSQL for state with Redis for coordination. Backends: `SqliteStore` (embedded, the
default, every role on one file). Each passes the contract suite
(tests/store/test_contract.py), which is parametrised by backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.base import DeliveryResult, Identity, InboundMessage
from gateway.clock import iso
from gateway.kpis.figures import Duration, Group, Key, StatsQuery, TimedFact, Worktime
from gateway.model import AgentState, Contact, Conversation, Event, Message


class StoreError(Exception):
    """Base of the store's expected failures (mapped to 4xx by the API)."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class Unstorable(StoreError):
    """A value the backend cannot hold or compare (PostgreSQL: U+0000 in text); the
    caller's input, not the store's fault."""


class Forbidden(StoreError):
    """The caller sees the conversation but may not act on it (it is someone else's)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a caller may see and act on, checked by the store inside each operation (so no
    check-then-act race). `agent`: the caller acts as this agent and only on conversations
    that are unassigned or its own. `queues`: the caller sees conversations in these queues
    and those assigned to `agent`; None sees every queue. `Scope()` is unrestricted."""

    agent: str | None = None
    queues: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.agent is None and self.queues is None

    def sees(self, conv: Conversation) -> bool:
        if self.queues is None:
            return True
        return (self.agent is not None and conv.assignee == self.agent) or (
            conv.queue in self.queues
        )

    def sees_queue(self, queue: str) -> bool:
        """The caller sees every conversation in `queue` (whoever has it)."""
        return self.queues is None or queue in self.queues

    def may_act(self, conv: Conversation) -> bool:
        return self.sees(conv) and (self.agent is None or conv.assignee in (None, self.agent))

    def where(
        self, queue_col: str = "queue", assignee_col: str = "assignee"
    ) -> tuple[str, list[str]]:
        """The `sees` rule as an SQL condition with its arguments ("" when unrestricted)."""
        if self.queues is None:
            return "", []
        marks = ",".join("?" * len(self.queues))
        clauses, args = [], []
        if self.queues:
            clauses.append(f"{queue_col} IN ({marks})")
            args.extend(sorted(self.queues))
        if self.agent is not None:
            clauses.append(f"{assignee_col} = ?")
            args.append(self.agent)
        return "(" + (" OR ".join(clauses) or "0") + ")", args


UNRESTRICTED = Scope()


def check_sees(scope: Scope | None, conv: Conversation) -> None:
    """NotFound (not 403: existence is not revealed) when the scope does not see it."""
    if scope is not None and not scope.sees(conv):
        raise NotFound(f"conversation {conv.id} not found")


def check_acts(scope: Scope | None, conv: Conversation) -> None:
    check_sees(scope, conv)
    if scope is not None and not scope.may_act(conv):
        raise Forbidden(f"the conversation is assigned to {conv.assignee}")


@dataclass(slots=True)
class Classification:
    """Where a new conversation goes: the router's classification, as the store keeps it."""

    queue: str
    priority: int
    required_skills: dict[str, int] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    rule: str | None = None
    reasons: list[str] = field(default_factory=list)
    # Every rule that took part (`continue: true`); escalation follows the first with steps.
    rules: list[str] = field(default_factory=list)


# The router's classification of a new conversation from its contact's attributes; must be
# pure and fast. Run before the ingest transaction where possible (`Preclassified`).
Classifier = Callable[[dict[str, str]], Classification]


@dataclass(slots=True)
class Preclassified:
    """A classification made before the ingest transaction, on the message's own contact
    attributes (what a new contact has: the common case of a new conversation), so the
    router's rules do not run while the store holds its write lock.

    What must still be decided inside the transaction, and why: whether a conversation is
    created at all (threading reads the contact's conversations, which only the
    transaction sees consistently), and the classification of a new conversation for an
    *existing* contact whose stored attributes differ from what the message carries —
    those attributes are only known, and only stable, inside the transaction, so the
    classifier runs there in that case (`decide`). A classifier that fails beforehand
    fails the ingest only if a new conversation needed its answer, as before."""

    classify: Classifier
    attributes: dict[str, str]
    result: Classification | None = None
    error: Exception | None = None

    @classmethod
    def before(cls, request: IngestRequest) -> Preclassified:
        attributes = dict(request.message.contact_attributes)
        pre = cls(request.classify, attributes)
        if request.message.edits is not None:
            return pre  # an edit rarely opens a conversation: decide inside if it does
        try:
            pre.result = request.classify(dict(attributes))
        except Exception as exc:  # kept: it matters only if a conversation is opened
            pre.error = exc
        return pre

    def decide(self, attributes: dict[str, str]) -> Classification:
        """The classification for a new conversation whose contact has `attributes`."""
        if attributes == self.attributes:
            if self.error is not None:
                raise self.error
            if self.result is not None:
                return self.result
        return self.classify(attributes)


@dataclass(slots=True)
class IngestRequest:
    channel: str
    channel_kind: str
    message: InboundMessage
    classify: Classifier
    now: float
    reopen_window: float
    # Blobs to store with the message: id → (content type, data).
    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Attachment metadata as stored on the message (name, content_type, size, blob, url).
    attachments: list[dict[str, Any]] = field(default_factory=list)
    raw_blob: str | None = None


@dataclass(slots=True)
class IngestOutcome:
    conversation: Conversation | None
    message: Message | None
    contact_id: str | None
    events: list[Event]
    duplicate: bool = False
    created: bool = False
    reopened: bool = False


@dataclass(slots=True)
class OutboundRequest:
    conversation_id: str
    text: str
    sender_type: str
    sender_id: str | None
    now: float
    html: str | None = None
    subject: str | None = None
    automatic: bool = False
    # What the caller may act on: the store refuses a conversation outside it.
    scope: Scope | None = None
    # Send on this channel to this address instead of the conversation's reply channel and
    # address (a verification code mailed to the address a chat visitor claims).
    channel: str | None = None
    to: Identity | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Files an agent attached (issue 14): as the message stores them, and their blobs.
    attachments: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass(slots=True)
class OutboxItem:
    message_id: str
    conversation_id: str
    channel: str
    to: Identity
    text: str
    attempts: int
    html: str | None
    subject: str | None
    thread_refs: list[str]
    thread_token: str | None
    automatic: bool
    sender_name: str | None
    # When the reply was queued: the retry horizon counts from here.
    queued_at: float = 0.0
    # A question with fixed answers (a survey), as stored: `connectors.base.Prompt` fields.
    prompt: dict[str, Any] | None = None
    # Files the message carries, as stored (name, content_type, size, blob): issue 14.
    attachments: list[dict[str, Any]] = field(default_factory=list)


QUARANTINE_STATUSES = ("new", "retried", "dismissed")


@dataclass(slots=True)
class QuarantinedItem:
    """An inbound item the gateway could not take: kept as it came, with the reason.
    `new` until someone acts: `retried` (it became message `message_id`) or `dismissed`."""

    id: str
    channel: str
    content_type: str
    size: int
    external_id: str | None
    reason: str
    metadata: dict[str, Any]
    status: str
    retries: int
    message_id: str | None
    created_at: float
    updated_at: float

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "content_type": self.content_type,
            "size": self.size,
            "external_id": self.external_id,
            "reason": self.reason,
            "metadata": self.metadata,
            "status": self.status,
            "retries": self.retries,
            "message_id": self.message_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class WaitingConversation:
    id: str
    queue: str
    priority: int
    required_skills: dict[str, int]
    channel_kind: str
    created_at: float
    # The nearest SLA due time (routing order `sla`; 1e18: none), issue 12.
    sla_due: float = 1e18


@dataclass(slots=True)
class RoutingSnapshot:
    waiting: list[WaitingConversation]
    agents: list[AgentState]
    # (agent id, channel kind) → conversations occupying capacity
    loads: dict[tuple[str, str], int]
    rr_last: dict[str, str]


@dataclass(frozen=True, slots=True)
class WaitingGroup:
    """Waiting conversations that any agent can take or none can: one channel kind, one
    queue, one set of required skills."""

    channel_kind: str
    queue: str
    required_skills: dict[str, int] = field(hash=False, compare=False)
    # The required skills as stored (the group's key in the store).
    skills_key: str = ""


@dataclass(slots=True)
class RoutingState:
    """What a routing pass reads before it reads any waiting conversation."""

    agents: list[AgentState]
    # (agent id, channel kind) → conversations occupying capacity
    loads: dict[tuple[str, str], int]
    rr_last: dict[str, str]
    # The groups with at least one conversation waiting, in order of their keys.
    waiting_groups: list[WaitingGroup]
    # How many conversations wait, when asked for (it costs a scan of the waiting index).
    waiting_count: int | None = None
    # The first conversations of each group (up to `head` of them, in routing order), so
    # that a pass usually needs no further read: what a page would start with.
    heads: dict[WaitingGroup, list[WaitingConversation]] = field(default_factory=dict)


# Keyset position in a queue's waiting order: (priority, created_at, id).
WaitingKey = tuple[int, float, str]


@dataclass(slots=True)
class Claim:
    conversation_id: str
    agent_id: str
    channel_kind: str
    # The capacity the router's snapshot showed; the store checks the current one.
    capacity: int
    queue: str
    strategy: str
    reasons: list[str]


@dataclass(slots=True)
class ConversationFilter:
    status: str | None = None
    queue: str | None = None
    assignee: str | None = None
    channel: str | None = None
    contact_id: str | None = None
    limit: int = 50
    cursor: str | None = None
    scope: Scope | None = None


class StoreResource(ABC):
    """What every role's backend has: it opens, closes and answers a health check."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> bool: ...

    def down_reason(self) -> str | None:
        """Why the store's server cannot be reached now (None: it can, or the backend
        has no server)."""
        return None


@dataclass(slots=True)
class BotHandoff:
    """What `bot_handoff` commits: where the conversation goes and why."""

    conversation_id: str
    bot: str
    queue: str
    priority: int
    required_skills: dict[str, int]
    tags: list[str]
    routing: dict[str, Any]
    handoff: dict[str, Any]
    # The queue the bot holds it in: a conversation no longer there, or taken by an agent
    # meanwhile, is left alone (`bot_handoff` raises Conflict).
    held_in: str = "bot"


class ConversationStore(StoreResource):
    """Conversations, messages, contacts and identities: ingest, replies, the lifecycle of
    a conversation and the queries behind the API."""

    # --- ingest and messages -------------------------------------------------------------
    @abstractmethod
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        """Dedupe, resolve the contact, thread, persist, append events: all or nothing."""

    @abstractmethod
    async def add_outbound(self, request: OutboundRequest) -> tuple[Message, list[Event]]:
        """Persist an outbound message and its outbox entry (status `queued`)."""

    @abstractmethod
    async def automatic_count(self, contact_id: str, since: float) -> int:
        """Automatic messages (acknowledgements, notices) sent to a contact since `since`."""

    # --- lifecycle -----------------------------------------------------------------------
    @abstractmethod
    async def assign(
        self,
        conversation_id: str,
        agent_id: str,
        capacity: int | None,
        by: str | None,
        now: float,
        scope: Scope | None = None,
    ) -> tuple[Conversation, list[Event]]:
        """Manual assignment; with `capacity` set, refuse (Conflict) when the agent is full
        against it or against the capacity the agent has when the assignment commits,
        whichever is lower."""

    @abstractmethod
    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]: ...

    @abstractmethod
    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]: ...

    @abstractmethod
    async def reopen(
        self, conversation_id: str, by: str | None, now: float, scope: Scope | None = None
    ) -> tuple[Conversation, list[Event]]: ...

    # --- the bot stage (issue 15; gateway/bots/) ------------------------------------------
    @abstractmethod
    async def bot_handoff(
        self, handoff: BotHandoff, now: float
    ) -> tuple[Conversation, list[Event]]:
        """A bot gives the conversation to a person: it moves to `handoff.queue` with the
        priority, skills, tags and routing its handoff facts gave (`conversation.transferred`
        carrying `handoff`), and `bot.handoff` is recorded."""

    @abstractmethod
    async def bot_record(self, event_type: str, data: dict[str, Any], now: float) -> list[Event]:
        """Append one `bot.*` event (an answer, a question back) to the event log."""

    @abstractmethod
    async def bot_turn_claim(self, conversation_id: str, holder: str, ttl: float) -> bool:
        """Take the conversation's bot turn for `holder` for `ttl` seconds, unless another
        holder's claim is still live (timed by the database server's clock on PostgreSQL):
        one instance at a time runs a turn. True when taken (or renewed: `holder`'s own)."""

    @abstractmethod
    async def bot_turn_release(self, conversation_id: str, holder: str) -> None:
        """End `holder`'s claim of the turn (a no-op when it is no longer theirs)."""

    # --- queries (a scope hides what it does not see: NotFound) ---------------------------
    @abstractmethod
    async def get_conversation(
        self, conversation_id: str, scope: Scope | None = None
    ) -> Conversation: ...

    @abstractmethod
    async def list_conversations(
        self, flt: ConversationFilter
    ) -> tuple[list[Conversation], str | None]: ...

    @abstractmethod
    async def messages(self, conversation_id: str, scope: Scope | None = None) -> list[Message]: ...

    @abstractmethod
    async def get_contact(self, contact_id: str, scope: Scope | None = None) -> Contact:
        """With a scope: only a contact one of whose conversations the scope sees."""

    @abstractmethod
    async def find_contact(self, identity: Identity, scope: Scope | None = None) -> Contact: ...

    @abstractmethod
    async def link_verified(
        self, claimant: Identity, claimed: Identity, now: float
    ) -> tuple[str, list[Event]]:
        """The holder of `claimant` proved it owns `claimed`: its claim becomes a verified
        identity. When another contact holds `claimed`, the claimant's contact is merged into
        it (its conversations move along), recorded so `unmerge` can undo it. Returns the
        contact the claimant now belongs to."""

    @abstractmethod
    async def unmerge(self, contact_id: str, now: float) -> tuple[str, list[Event]]:
        """Undo the latest merge of `contact_id` into another contact: it is on its own
        again, with the conversations the merge moved. Returns the contact it had joined."""


class OutboxStore(StoreResource):
    """The queue of replies to deliver, with leases, and the delivery receipts."""

    @abstractmethod
    async def apply_receipt(
        self, channel: str, provider_message_id: str, status: str, reason: str | None, now: float
    ) -> list[Event]: ...

    # --- outbox ----------------------------------------------------------------------------
    @abstractmethod
    async def outbox_lease(self, now: float, limit: int, lease_seconds: float) -> list[OutboxItem]:
        """Take up to `limit` due entries, hiding them from others for `lease_seconds`."""

    @abstractmethod
    async def outbox_record(
        self,
        message_id: str,
        result: DeliveryResult,
        next_attempt_at: float | None,
        now: float,
    ) -> list[Event]:
        """Record an attempt: sent, retry at `next_attempt_at`, or failed (when None)."""

    @abstractmethod
    async def outbox_next_due(self) -> float | None: ...

    @abstractmethod
    async def outbox_release_all(self) -> int:
        """Drop every lease (single-instance start-up after a crash)."""


class RoutingStore(StoreResource):
    """Agents, their presence, capacity and load, the waiting conversations and the
    router's claims."""

    # --- routing -------------------------------------------------------------------------
    @abstractmethod
    async def sync_agents(self, agents: list[tuple[str, str, dict[str, int]]]) -> None:
        """Make the configured agents exist: (id, initial presence, capacity)."""

    @abstractmethod
    async def routing_snapshot(self) -> RoutingSnapshot: ...

    @abstractmethod
    async def routing_state(self, count_waiting: bool = False, head: int = 0) -> RoutingState:
        """Agents, loads, round-robin cursors, which groups (kind, queue, required skills)
        have waiting conversations and the first `head` of each, at a cost that does not
        grow with the number waiting."""

    @abstractmethod
    async def waiting_page(
        self, group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        """Up to `limit` waiting conversations of one group, highest priority then oldest
        then id first, starting after the keyset position `after`."""

    @abstractmethod
    async def claim(self, claims: list[Claim], now: float) -> tuple[list[str], list[Event]]:
        """Assign each conversation if it is still waiting, the agent still online and
        under the capacity the agent has when the claim commits (not `Claim.capacity`, the
        one the plan saw): a compare-and-set per claim. Returns the claimed conversation ids."""

    @abstractmethod
    async def set_presence(self, agent_id: str, presence: str, now: float) -> list[Event]: ...

    @abstractmethod
    async def set_capacity(
        self, agent_id: str, capacity: dict[str, int], now: float
    ) -> list[Event]: ...

    @abstractmethod
    async def agent_states(self) -> list[AgentState]: ...


class EventLogStore(StoreResource):
    """The log of committed events, read from a cursor (docs/eventlog.md)."""

    @abstractmethod
    async def events_since(self, since: int, limit: int) -> list[Event]: ...

    @abstractmethod
    async def last_event_id(self) -> int: ...

    @abstractmethod
    async def events_pruned_through(self) -> int:
        """The highest id retention has removed (0 when nothing was): a cursor below it
        has lost events."""

    @abstractmethod
    async def prune_events(self, older_than: float, keep: int | None) -> int:
        """Remove the oldest events: those committed before `older_than` and, with
        `keep`, all but the newest `keep`. Always a prefix of the log, so one watermark
        (`events_pruned_through`) says what is gone. Returns how many were removed."""


class KeyValueStore(StoreResource):
    """Small values and leases for connectors and coordination."""

    # --- connector key-value -------------------------------------------------------------
    @abstractmethod
    async def kv_get(self, namespace: str, key: str) -> str | None: ...

    @abstractmethod
    async def kv_set(self, namespace: str, key: str, value: str) -> None: ...

    @abstractmethod
    async def kv_setdefault(self, namespace: str, key: str, value: str) -> str:
        """Store `value` unless the key has one, in one transaction; returns the stored
        value. Of several callers at once (several instances) all get the same value."""

    @abstractmethod
    async def kv_delete(self, namespace: str, key: str) -> None: ...

    @abstractmethod
    async def kv_lease(
        self, namespace: str, key: str, holder: str, ttl: float, now: float
    ) -> bool: ...

    @abstractmethod
    async def kv_set_fenced(
        self, namespace: str, key: str, value: str, fence: str, token: int
    ) -> bool:
        """Set `key` only if `token` is at least the fencing token last written for `fence`
        (kept as the entry `fence:<fence>` of the namespace), in one transaction; records
        `token`. False (nothing written) when a newer lease holder has written."""


class BlobStore(StoreResource):
    """Attachments and raw inbound items, by id."""

    @abstractmethod
    async def get_blob(self, blob_id: str, scope: Scope | None = None) -> tuple[str, bytes]:
        """With a scope: only a blob of a message in a conversation the scope sees."""


class QuarantineStore(StoreResource):
    """Inbound items the gateway could not take."""

    # --- quarantine ----------------------------------------------------------------------
    @abstractmethod
    async def quarantine_add(
        self,
        channel: str,
        content_type: str,
        data: bytes,
        reason: str,
        now: float,
        external_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[QuarantinedItem, list[Event]]:
        """Keep an item the gateway could not take (status `new`), with a
        `message.quarantined` event."""

    @abstractmethod
    async def quarantine_list(
        self,
        status: str | None = None,
        channel: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[QuarantinedItem], str | None]:
        """Newest first; the second value is the cursor of the next page."""

    @abstractmethod
    async def quarantine_get(self, item_id: str) -> tuple[QuarantinedItem, bytes]: ...

    @abstractmethod
    async def quarantine_settle(
        self,
        item_id: str,
        status: str,
        now: float,
        reason: str | None = None,
        message_id: str | None = None,
    ) -> tuple[QuarantinedItem, list[Event]]:
        """Record what became of an item: `retried` (with the message it became),
        `dismissed`, or `new` again after a retry that failed (with the new reason)."""

    @abstractmethod
    async def quarantine_unreviewed(self) -> dict[str, int]:
        """Items still `new`, counted per channel."""


class Store(
    ConversationStore,
    OutboxStore,
    RoutingStore,
    EventLogStore,
    KeyValueStore,
    BlobStore,
    QuarantineStore,
):
    """Durable state of the gateway, every role in one: each method is atomic. A backend
    may implement the roles separately (state in PostgreSQL, coordination in Redis) and
    compose them; `SqliteStore` implements all of them on one database file."""


def json_default(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- escalation, offers, reassignment (issue 12; SqliteEscalation) ----------------------------


@dataclass(slots=True)
class WaitStamp:
    """A conversation's waiting stamps as the escalation timer reads them."""

    conversation_id: str
    reason: str  # created, reopened, transferred, requeued
    since: float
    step: int
    state: str  # new, scheduled, idle
    due: float | None
    waiting: bool  # still open and unassigned
    queue: str
    priority: int
    required_skills: dict[str, int]
    channel_kind: str
    rules: list[str]


@dataclass(slots=True)
class WaitUpdate:
    """What the escalation timer commits for one conversation, if its stamps are still
    `expect_since`/`expect_step` (else another process did it first)."""

    conversation_id: str
    expect_since: float
    expect_step: int
    step: int
    due: float | None  # None: idle
    # The conversation's new routing (only while it still waits), and its event.
    queue: str | None = None
    priority: int | None = None
    required_skills: dict[str, int] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class RoutingHint:
    """What routing must know of one waiting conversation beyond its queue and skills."""

    offered: bool = False  # an offer is pending: not routed meanwhile
    exclude: frozenset[str] = frozenset()
    sticky: str | None = None


@dataclass(slots=True)
class ReplyStamp:
    """An assigned conversation whose last customer message has no agent answer yet."""

    conversation_id: str
    agent_id: str
    queue: str
    channel_kind: str
    last_inbound_at: float
    assigned_at: float


@dataclass(slots=True)
class Offer:
    id: str
    conversation_id: str
    agent_id: str
    channel_kind: str
    queue: str
    status: str  # pending, accepted, rejected, expired, withdrawn
    created_at: float
    expires_at: float
    answered_at: float | None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "agent": self.agent_id,
            "queue": self.queue,
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "answered_at": self.answered_at,
        }


class EscalationStore(ABC):
    """The stamps and conditional updates behind escalation, offers, no-reply
    reassignment, sticky routing and the offline policy. Every write is a compare-and-set,
    so two processes firing the same deadline act once."""

    @abstractmethod
    async def wait_stamps(
        self, now: float, limit: int, conversation_id: str | None = None
    ) -> list[WaitStamp]:
        """Stamps to act on: not yet scheduled, or due by `now`; or one conversation's."""

    @abstractmethod
    async def waits_next_due(self) -> float | None:
        """The earliest scheduled step; `-inf` when some stamp awaits scheduling."""

    @abstractmethod
    async def waits_commit(self, updates: list[WaitUpdate], now: float) -> list[Event]: ...

    @abstractmethod
    async def waits_reschedule(self) -> None:
        """Every waiting conversation is scheduled again (the rules changed)."""

    @abstractmethod
    async def routing_hints(
        self, ids: list[str], now: float, skip_for: float, sticky_window: float | None
    ) -> dict[str, RoutingHint]: ...

    @abstractmethod
    async def offer_create(
        self, claims: list[tuple[Claim, float]], now: float
    ) -> tuple[list[str], list[Event]]:
        """Offer each conversation to its claim's agent until the given expiry, under
        the same compare-and-set as `claim`; the ids offered."""

    @abstractmethod
    async def offer_answer(
        self, conversation_id: str, agent_id: str, accept: bool, now: float, scope: Scope | None
    ) -> tuple[Conversation, list[Event]]:
        """Accept (assign) or reject the agent's pending offer. NotFound when there is no
        offer to this agent; Conflict when it is no longer pending (expired, withdrawn)."""

    @abstractmethod
    async def offers_next_due(self) -> float | None: ...

    @abstractmethod
    async def offers_expire(self, now: float, away_queues: frozenset[str]) -> list[Event]:
        """Expire the pending offers due by `now`; their agents are set away when the
        offer's queue is in `away_queues` (and they are still online)."""

    @abstractmethod
    async def offers(
        self, agent_id: str | None = None, conversation_id: str | None = None
    ) -> list[Offer]:
        """Pending offers, of one agent or of one conversation."""

    @abstractmethod
    async def awaiting_reply(self) -> list[ReplyStamp]: ...

    @abstractmethod
    async def offline_agents(self) -> list[tuple[str, float]]:
        """Agents offline (since when) that still hold assigned conversations."""

    @abstractmethod
    async def requeue(
        self,
        conversation_id: str | None,
        agent_id: str,
        reason: str,
        now: float,
        expect_last_inbound_at: float | None = None,
        expect_offline_since: float | None = None,
    ) -> list[Event]:
        """Give back to routing one conversation of `agent_id` (no reply: only if the
        customer's last message is still `expect_last_inbound_at` and unanswered), or all
        its assigned ones (offline: only if it is still offline since then)."""


def escalation_store(store: Store) -> EscalationStore:
    """The store's escalation role (every backend has it)."""
    if not isinstance(store, EscalationStore):
        raise TypeError(f"{type(store).__name__} has no escalation role")
    return store


# --- KPI rollups (issue 13; gateway/kpis/figures.py, gateway/store/sqlite/stats.py) ---------------
class StatsStore(ABC):
    """The store's role behind `/v1/stats`: fold the event log into KPI facts, read them."""

    @abstractmethod
    async def stats_fold(
        self, limit: int = 2000, worktime: Worktime | None = None, sla: bool = False
    ) -> tuple[int, list[TimedFact]]:
        """Fold up to `limit` events after the fold's cursor (atomically with the cursor);
        returns how many were folded and the first responses / resolutions recorded.
        `worktime(queue, a, b)`: business seconds of the timed facts; `sla`: decide SLA
        targets, stopping before an event that changes the SLA clocks and they have not read."""

    @abstractmethod
    async def stats_read(
        self, query: StatsQuery, duration: Duration | None = None
    ) -> tuple[Group, dict[Key, Group] | None]:
        """The raw figures of the period: totals, and each group's when grouped."""

    @abstractmethod
    async def survey_rows(self, start: float, end: float) -> list[tuple[Any, ...]]:
        """Survey responses sent in [start, end); none while there is no survey table."""

    @abstractmethod
    async def stats_gauges(self, now: float, survey_window: float) -> dict[str, Any]:
        """Backlog and waiting by queue, agents online, recent survey tallies."""

    @abstractmethod
    async def record_departure(
        self, identity: Identity, left_at: float, channel: str, now: float
    ) -> list[Event]:
        """A live-chat visitor left; `conversation.abandoned` if no agent had replied."""


# --- surveys (gateway/surveys/; SQLite: gateway/store/sqlite/surveys.py) -------------------
SURVEY_KINDS = ("csat", "nps", "ces")


@dataclass(slots=True)
class SurveyResponse:
    """One survey question sent to a customer, and its answer once given."""

    id: str
    conversation_id: str
    contact_id: str
    channel: str
    kind: str
    score: int | None
    comment: str | None
    agent_id: str | None
    queue: str
    sent_at: float
    answered_at: float | None
    language: str
    message_id: str | None = None
    resolved_at: float = 0.0

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "contact_id": self.contact_id,
            "channel": self.channel,
            "kind": self.kind,
            "score": self.score,
            "comment": self.comment,
            "agent_id": self.agent_id,
            "queue": self.queue,
            "language": self.language,
            "sent_at": iso(self.sent_at),
            "answered_at": iso(self.answered_at),
        }


@dataclass(slots=True)
class SurveyFacts:
    """What the survey policy needs to know about one resolution that fell due."""

    conversation: Conversation
    contact_attributes: dict[str, str]
    opted_out: bool
    # The conversation's latest inbound message was sent by a machine.
    automated: bool
    # The latest outbound message of the conversation failed (a bounce, a dead number).
    bounced: bool
    # When the contact was last asked, per kind, and how many surveys since `window`.
    last_sent: dict[str, float]
    recent_surveys: int
    # Automatic messages the contact got within the window (the loop guard).
    recent_automatic: int


@dataclass(slots=True)
class SurveySend:
    """A decision to ask: the response row and the question's outbound message."""

    response: SurveyResponse
    message: OutboundRequest


@dataclass(slots=True)
class SurveyMatch:
    """What an inbound message may be to the surveys of its sender on its channel."""

    answered_by: SurveyResponse | None = None
    open: SurveyResponse | None = None
    awaiting_comment: SurveyResponse | None = None


class SurveyStore(ABC):
    """The store's part of the surveys: every method is atomic."""

    @abstractmethod
    async def survey_next_due(
        self, delay: float, horizon: float, queues: set[str] | None
    ) -> float | None:
        """The earliest resolution at or after `horizon` (in `queues`; None: all) with no
        survey decision yet, plus `delay`; None when there is none."""

    @abstractmethod
    async def survey_due(
        self,
        now: float,
        delay: float,
        horizon: float,
        queues: set[str] | None,
        window: float,
        limit: int,
    ) -> list[SurveyFacts]:
        """The resolutions due at `now` with no decision yet, with what the policy needs."""

    @abstractmethod
    async def survey_decide(
        self,
        conversation_id: str,
        resolved_at: float,
        outcome: str,
        send: SurveySend | None,
        now: float,
    ) -> tuple[SurveyResponse | None, list[Event]]:
        """Record the decision for one resolution, once (a conditional insert): with `send`,
        the response row and the question (queued in the outbox) in the same transaction.
        Returns None and no events when it was decided already, or the conversation is no
        longer resolved at `resolved_at`."""

    @abstractmethod
    async def survey_get(self, response_id: str) -> SurveyResponse: ...

    @abstractmethod
    async def survey_match(
        self,
        identity: Identity,
        channel: str,
        external_id: str,
        since: float,
        comment_since: float | None = None,
    ) -> SurveyMatch:
        """For one inbound message, in one read: the response it already answered (a
        redelivery), the survey it may answer (`survey_open_for`), and, with
        `comment_since`, a survey answered since then with a score and no comment yet."""

    @abstractmethod
    async def survey_open_for(
        self, identity: Identity, channel: str, since: float
    ) -> SurveyResponse | None:
        """The latest unanswered survey sent on `channel` to the contact of `identity` since
        `since`, if any."""

    @abstractmethod
    async def survey_answered_by(self, channel: str, external_id: str) -> SurveyResponse | None:
        """The response an inbound message (by its external id) already answered."""

    @abstractmethod
    async def survey_answer(
        self,
        response_id: str,
        score: int | None,
        comment: str | None,
        channel: str | None,
        external_id: str | None,
        now: float,
    ) -> tuple[SurveyResponse, list[Event]]:
        """Record a score (only the first one counts: conditional on no answer yet) and/or a
        comment (only once answered). `survey.answered` when something changed."""

    @abstractmethod
    async def survey_list(
        self,
        contact_id: str | None = None,
        conversation_id: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[SurveyResponse], str | None]:
        """Newest first; the second value is the cursor of the next page."""

    @abstractmethod
    async def survey_optout(
        self, contact_id: str, opted_out: bool, via: str, now: float
    ) -> tuple[bool, list[Event]]:
        """Set whether the contact gets surveys; returns whether it changed."""

    @abstractmethod
    async def survey_opted_out(self, contact_id: str) -> float | None:
        """When the contact opted out, or None."""

    @abstractmethod
    async def contact_set_attributes(
        self, contact_id: str, attributes: dict[str, str | None], now: float
    ) -> tuple[Contact, list[Event]]:
        """Set (or, with None, remove) contact attributes such as `language`."""


class PortalStore(ABC):
    """The store's part of the customer portal (issue 15, gateway/portal/): each contact's
    portal epoch, which every link carries; bumping it revokes the links made before."""

    @abstractmethod
    async def portal_epoch(self, contact_id: str) -> int:
        """The contact's portal epoch (0 until revoked); NotFound for an unknown contact."""

    @abstractmethod
    async def portal_revoke(self, contact_id: str, now: float) -> int:
        """Bump the portal epoch of the contact and of every contact merged into it (its
        links show the same conversations), atomically; returns the contact's new epoch.
        NotFound for an unknown contact."""


def portal_store(store: object) -> PortalStore:
    if not isinstance(store, PortalStore):
        raise TypeError(f"{type(store).__name__} keeps no portal epochs")
    return store
