"""A dry run of routing for one message: classification and the agent it would get (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import PRIORITY_RANK, RoutingConfig
from .rules import Classification, MessageFacts, classify
from .strategies import AgentSnapshot, ConversationSnapshot, Decision, decide


@dataclass
class Explanation:
    classification: Classification
    # None when the classification names no configured queue.
    decision: Decision | None


def explain(
    config: RoutingConfig,
    facts: MessageFacts,
    agents: Sequence[AgentSnapshot],
    rr_last: Mapping[str, str],
    now: float,
) -> Explanation:
    """Classify `facts`, then decide among `agents` as a new conversation would be decided."""
    cls = classify(config, facts)
    queue = config.queue(cls.queue)
    conv = ConversationSnapshot(
        "(dry-run)",
        cls.queue,
        PRIORITY_RANK[cls.priority],
        cls.required_skills,
        facts.channel_type,
        now,
    )
    decision = decide(conv, queue, agents, rr_last.get(cls.queue), now) if queue else None
    return Explanation(cls, decision)
