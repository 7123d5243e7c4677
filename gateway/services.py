"""The one commit path (DESIGN §1, rule 1): every change of state goes through here.

Each method is one unit of work: the store commits the change and appends its events in
one transaction, then the committed events are published on the bus (which wakes the
event-log readers — streams, webhooks — and routing, through its listener), then whoever
waits beyond the bus is woken (the outbox, for a new reply; routing, for a message that
waits). API handlers, ingest, the acknowledger, quarantine review and verification call
these methods and never publish or poke by hand. Reads go to the store directly.

The background loops commit through here too: the dispatcher's claims and the outbox's
delivery results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from connectors.base import DeliveryResult, Identity
from gateway.events import EventBus
from gateway.model import Contact, Conversation, Event, Message
from gateway.store.base import (
    Claim,
    IngestOutcome,
    IngestRequest,
    OutboundRequest,
    QuarantinedItem,
    Scope,
    StatsStore,
    Store,
    SurveyResponse,
    SurveySend,
    SurveyStore,
    WaitUpdate,
    escalation_store,
)
from gateway.store.timekeeping import SlaPlanner, TimeStore

if TYPE_CHECKING:
    from gateway.outreach.store import StartOutcome, StartRequest


def _nothing() -> None:
    pass


class Services:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Callable[[], float],
        wake_outbox: Callable[[], None] = _nothing,
        wake_routing: Callable[[], None] = _nothing,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.wake_outbox = wake_outbox
        self.wake_routing = wake_routing

    def committed(self, events: Iterable[Event]) -> None:
        """Publish events the store has committed: the bus wakes every reader of the log
        (and routing, for the events that may let it assign)."""
        self.bus.publish(events)

    def announce(self, events: Iterable[Event]) -> None:
        """Live-only events (typing): nothing is stored, the bus carries them."""
        self.bus.publish(events)

    # --- messages --------------------------------------------------------------------------
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        outcome = await self.store.ingest(request)
        self.committed(outcome.events)
        conv = outcome.conversation
        if (
            not outcome.duplicate
            and conv is not None
            and conv.status == "open"
            and conv.assignee is None
        ):
            self.wake_routing()
        return outcome

    async def visitor_left(self, channel: str, identity: Identity, at: float) -> list[Event]:
        """A live-chat visitor left: `conversation.abandoned` when no agent had answered."""
        store = self.store
        if not isinstance(store, StatsStore):
            return []
        events = await store.record_departure(identity, at, channel, self.clock())
        self.committed(events)
        return events

    async def apply_receipt(
        self, channel: str, provider_message_id: str, status: str, reason: str | None
    ) -> list[Event]:
        events = await self.store.apply_receipt(
            channel, provider_message_id, status, reason, self.clock()
        )
        self.committed(events)
        return events

    async def reply(self, request: OutboundRequest) -> Message:
        """Queue a reply (agent, acknowledgement, verification code) and wake the outbox."""
        message, events = await self.store.add_outbound(request)
        self.committed(events)
        self.wake_outbox()
        return message

    async def outbox_record(
        self, message_id: str, result: DeliveryResult, next_attempt_at: float | None
    ) -> list[Event]:
        """A delivery attempt's result (the outbox loop)."""
        events = await self.store.outbox_record(message_id, result, next_attempt_at, self.clock())
        self.committed(events)
        return events

    # --- conversations ---------------------------------------------------------------------
    async def claim(self, claims: list[Claim], now: float) -> list[str]:
        """Claim routing decisions (the dispatcher); the ids of the conversations assigned."""
        claimed, events = await self.store.claim(claims, now)
        self.committed(events)
        return claimed

    async def assign(
        self,
        conversation_id: str,
        agent_id: str,
        capacity: int | None,
        by: str | None,
        scope: Scope | None = None,
    ) -> Conversation:
        conv, events = await self.store.assign(
            conversation_id, agent_id, capacity, by, self.clock(), scope
        )
        self.committed(events)
        return conv

    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None = None
    ) -> Conversation:
        conv, events = await self.store.transfer(conversation_id, queue, by, scope, self.clock())
        self.committed(events)
        return conv

    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None = None
    ) -> Conversation:
        conv, events = await self.store.resolve(conversation_id, by, scope, self.clock())
        self.committed(events)
        return conv

    async def reopen(
        self, conversation_id: str, by: str | None, scope: Scope | None = None
    ) -> Conversation:
        conv, events = await self.store.reopen(conversation_id, by, self.clock(), scope)
        self.committed(events)
        return conv

    # --- agents ----------------------------------------------------------------------------
    async def set_presence(self, agent_id: str, presence: str) -> None:
        self.committed(await self.store.set_presence(agent_id, presence, self.clock()))

    async def set_capacity(self, agent_id: str, capacity: dict[str, int]) -> None:
        self.committed(await self.store.set_capacity(agent_id, capacity, self.clock()))

    # --- contacts --------------------------------------------------------------------------
    async def link_verified(self, claimant: Identity, claimed: Identity, now: float) -> str:
        contact_id, events = await self.store.link_verified(claimant, claimed, now)
        self.committed(events)
        return contact_id

    async def unmerge(self, contact_id: str) -> str:
        restored, events = await self.store.unmerge(contact_id, self.clock())
        self.committed(events)
        return restored

    # --- quarantine ------------------------------------------------------------------------
    async def quarantine_add(
        self,
        channel: str,
        content_type: str,
        data: bytes,
        reason: str,
        external_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> QuarantinedItem:
        kept, events = await self.store.quarantine_add(
            channel,
            content_type,
            data,
            reason,
            self.clock(),
            external_id=external_id,
            metadata=metadata,
        )
        self.committed(events)
        return kept

    async def quarantine_settle(
        self,
        item_id: str,
        status: str,
        reason: str | None = None,
        message_id: str | None = None,
    ) -> QuarantinedItem:
        settled, events = await self.store.quarantine_settle(
            item_id, status, self.clock(), reason=reason, message_id=message_id
        )
        self.committed(events)
        return settled

    # --- business hours, SLA, wait queue (issue 12) ----------------------------------------
    async def sla_fire(self, store: TimeStore, now: float, planner: SlaPlanner) -> list[Event]:
        """Recompute the SLA clocks that changed and fire what fell due (once)."""
        events = await store.sla_fire(now, planner)
        self.committed(events)
        if any(e.type == "sla.breached" for e in events):
            self.wake_routing()  # a bumped priority or a moved conversation reorders routing
        return events

    async def notice_once(self, store: TimeStore, conversation_id: str, kind: str) -> bool:
        """Record an automatic notice (closed, long wait) for the conversation; False when
        it had it already (it is sent at most once)."""
        return await store.notice_once(conversation_id, kind, self.clock())

    # --- escalation, offers, reassignment (issue 12) ---------------------------------------
    async def offer(self, claims: list[tuple[Claim, float]], now: float) -> list[str]:
        """Offer routing decisions instead of assigning them (offer.created)."""
        offered, events = await escalation_store(self.store).offer_create(claims, now)
        self.committed(events)
        return offered

    async def answer_offer(
        self, conversation_id: str, agent_id: str, accept: bool, scope: Scope | None = None
    ) -> Conversation:
        """offer.accepted (and conversation.assigned) or offer.rejected."""
        conv, events = await escalation_store(self.store).offer_answer(
            conversation_id, agent_id, accept, self.clock(), scope
        )
        self.committed(events)
        if not accept:
            self.wake_routing()
        return conv

    async def expire_offers(self, now: float, away_queues: frozenset[str]) -> list[Event]:
        """offer.expired (and agent.presence away, when the queue says so)."""
        events = await escalation_store(self.store).offers_expire(now, away_queues)
        self.committed(events)
        if events:
            self.wake_routing()
        return events

    async def escalate(self, updates: list[WaitUpdate], now: float) -> list[Event]:
        """Escalation steps (conversation.escalated, conversation.escalation_exhausted)."""
        events = await escalation_store(self.store).waits_commit(updates, now)
        self.committed(events)
        if any(e.type == "conversation.escalated" for e in events):
            self.wake_routing()
        return events

    async def requeue(
        self,
        conversation_id: str | None,
        agent_id: str,
        reason: str,
        now: float,
        expect_last_inbound_at: float | None = None,
        expect_offline_since: float | None = None,
    ) -> list[Event]:
        """Back to routing: the assignee did not reply, or went offline
        (conversation.requeued)."""
        events = await escalation_store(self.store).requeue(
            conversation_id,
            agent_id,
            reason,
            now,
            expect_last_inbound_at=expect_last_inbound_at,
            expect_offline_since=expect_offline_since,
        )
        self.committed(events)
        if events:
            self.wake_routing()
        return events

    # --- surveys (gateway/surveys/) --------------------------------------------------------
    @property
    def _surveys(self) -> SurveyStore:
        if not isinstance(self.store, SurveyStore):
            raise TypeError(f"{type(self.store).__name__} keeps no surveys")
        return self.store

    async def survey_decide(
        self, conversation_id: str, resolved_at: float, outcome: str, send: SurveySend | None
    ) -> SurveyResponse | None:
        """Decide once about one resolution; with `send`, queue the question (`survey.sent`)."""
        response, events = await self._surveys.survey_decide(
            conversation_id, resolved_at, outcome, send, self.clock()
        )
        self.committed(events)
        if response is not None:
            self.wake_outbox()
        return response

    async def survey_answer(
        self,
        response_id: str,
        score: int | None,
        comment: str | None,
        channel: str | None = None,
        external_id: str | None = None,
    ) -> tuple[SurveyResponse, bool]:
        """Record an answer (`survey.answered`); whether anything changed."""
        response, events = await self._surveys.survey_answer(
            response_id, score, comment, channel, external_id, self.clock()
        )
        self.committed(events)
        return response, bool(events)

    async def survey_optout(self, contact_id: str, opted_out: bool, via: str) -> bool:
        changed, events = await self._surveys.survey_optout(
            contact_id, opted_out, via, self.clock()
        )
        self.committed(events)
        return changed

    async def start_conversation(self, request: StartRequest) -> StartOutcome:
        """Issue 15, proactive outreach: contact, conversation and first message in one unit
        of work (gateway/outreach/store.py); wake the outbox, and routing when unassigned."""
        from gateway.outreach.store import outreach_store

        outcome = await outreach_store(self.store).start_conversation(request)
        self.committed(outcome.events)
        self.wake_outbox()
        if outcome.conversation.assignee is None:
            self.wake_routing()
        return outcome

    async def kb_suggestion(self, event: str, data: dict[str, Any]) -> None:
        """Issue 15: what the widget's article suggestions did (gateway/store/kb.py)."""
        from gateway.store.kb import kb_store

        self.committed(await kb_store(self.store).kb_record(event, data, self.clock()))

    async def set_contact_attributes(
        self, contact_id: str, attributes: dict[str, str | None]
    ) -> Contact:
        contact, events = await self._surveys.contact_set_attributes(
            contact_id, attributes, self.clock()
        )
        self.committed(events)
        return contact
