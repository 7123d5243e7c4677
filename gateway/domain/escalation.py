"""The rules of escalation and offers that every store backend applies the same way
(gateway/store/sqlite/escalation.py, gateway/store/postgres/escalation.py): pure functions
of the values the stores read, so the backends cannot drift apart."""

from __future__ import annotations

from typing import Any

from gateway.model import NewEvent
from router.reasons import LANGUAGES, Reason, localized_of, render

# The events that change the stamps (`waits`, `agent_replies`, `presence_stamps`) or
# withdraw a pending offer; every other event leaves them as they are.
WAIT_STARTS = frozenset(
    {
        "conversation.created",
        "conversation.reopened",
        "conversation.transferred",
        "conversation.requeued",
    }
)
WITHDRAWS = frozenset(
    {
        "conversation.assigned",
        "conversation.transferred",
        "conversation.resolved",
        "conversation.requeued",
    }
)
STAMPED = WAIT_STARTS | WITHDRAWS | {"agent.presence", "message.queued"}


def wait_reason(event_type: str) -> str:
    """Why a conversation started waiting: the event's name after `conversation.`."""
    return event_type.removeprefix("conversation.")


def event_conversation(data: dict[str, Any]) -> str | None:
    """The conversation an event is about (`conversation.created` carries it whole)."""
    cid = data.get("conversation_id")
    if cid is None and isinstance(data.get("conversation"), dict):
        cid = data["conversation"].get("id")
    return None if cid is None else str(cid)


def routing_rules(routing: dict[str, Any]) -> list[str]:
    """The routing rules that matched a conversation, as its `routing` records them."""
    return list(routing.get("rules") or ([routing["rule"]] if routing.get("rule") else []))


def offer_refusal(status: str, expires_at: float, now: float) -> str | None:
    """Why an answer to an offer comes too late (a conflict), or None while it stands."""
    if status == "pending" and expires_at <= now:
        return "the offer has expired"
    if status != "pending":
        return f"the offer is {status}"
    return None


def offer_data(offer_id: str, conversation_id: str, agent: str, queue: str) -> dict[str, Any]:
    """What every `offer.*` event says of its offer."""
    return {
        "offer_id": offer_id,
        "conversation_id": conversation_id,
        "agent": agent,
        "queue": queue,
    }


def accepted_events(
    data: dict[str, Any],
    routing: dict[str, Any],
    strategy: str,
    offer_reasons: list[str] | dict[str, list[str]],
) -> list[NewEvent]:
    """An accepted offer: `offer.accepted`, and the assignment it makes (by the router,
    with the reasons of the routing, of the offer and of the answer). `offer_reasons` as
    the offer stored them: per language, or (offers made before) a list in English."""
    agent = data["agent"]
    accepted = Reason("core.offer_accepted", agent=agent)
    offered = offer_reasons if isinstance(offer_reasons, dict) else {"en": offer_reasons}
    english = offered.get("en", [])
    before = localized_of(routing)
    return [
        NewEvent("offer.accepted", data),
        NewEvent(
            "conversation.assigned",
            {
                "conversation_id": data["conversation_id"],
                "agent": agent,
                "queue": data["queue"],
                "strategy": strategy,
                "rule": routing.get("rule"),
                "reasons": [*routing.get("reasons", []), *english, accepted],
                "reasons_localized": {
                    lang: [
                        *before.get(lang, before.get("en", [])),
                        *offered.get(lang, english),
                        render(accepted, lang),
                    ]
                    for lang in LANGUAGES
                },
                "by": "router",
            },
        ),
    ]


def away_event(agent: str) -> NewEvent:
    """An agent set away because an offer to them timed out."""
    return NewEvent(
        "agent.presence", {"agent": agent, "status": "away", "reason": "offer timed out"}
    )
