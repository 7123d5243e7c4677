"""Starting a conversation (issue 15): the router's classification for it, then the one
commit path (`Services.start_conversation`: the store's unit of work, publish, wake the
outbox that sends the first message and routing for a conversation nobody took)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.metrics import METRICS
from gateway.outreach.store import StartOutcome, StartRequest
from gateway.services import Services
from gateway.store.base import Classification, Classifier
from router import PRIORITY_RANK, MessageFacts, RoutingConfig, classify
from router.reasons import Reason
from router.schedule import place


def classifier(
    routing: RoutingConfig,
    channel: str,
    channel_kind: str,
    text: str,
    subject: str | None,
    queue: str | None,
    by: str,
    clock: Callable[[], float],
) -> Classifier:
    """The rules' classification of the first message, as for a customer's (priority,
    skills, tags); `queue` chosen by the starter wins over the rules' queue. A closed queue
    parks or overflows as for any new conversation."""

    def run(attributes: dict[str, str]) -> Classification:
        c = classify(routing, MessageFacts(channel, channel_kind, text, subject, attributes))
        target, reasons = c.queue, list(c.reasons)
        if queue is not None and queue != target:
            target, reasons = queue, [*reasons, Reason("core.outreach_queue", queue=queue, by=by)]
        if routing.hours:
            placed = place(routing, target, clock())
            if placed.reason is not None:
                target, reasons = placed.queue, [*reasons, placed.reason]
        return Classification(
            target, PRIORITY_RANK[c.priority], c.required_skills, c.tags, c.rule, reasons, c.rules
        )

    return run


async def start(services: Services, request: StartRequest) -> StartOutcome:
    """Through the one commit path (`Services.start_conversation`), counted as a new
    conversation."""
    outcome = await services.start_conversation(request)
    conv = outcome.conversation
    METRICS.conversations_created.labels(conv.channel, conv.queue).inc()
    return outcome
