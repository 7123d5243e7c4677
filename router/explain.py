"""A dry run of routing for one message: classification and the agent it would get (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import PRIORITY_RANK, RoutingConfig
from .handoff import route_handoff
from .policies import describe
from .rules import Classification, MessageFacts, classify
from .strategies import (
    DECLINED,
    AgentSnapshot,
    ConversationSnapshot,
    Decision,
    _exclusion,
    _idle_text,
    _skill_score,
    decide,
)


@dataclass
class Explanation:
    classification: Classification
    # None when the classification names no configured queue.
    decision: Decision | None
    # Every agent of the queue: eligible with its score, or why it is excluded.
    candidates: list[dict[str, Any]] = field(default_factory=list)
    # The escalation a new conversation would follow (step 0, due times from `now`).
    escalation: dict[str, Any] = field(default_factory=dict)


def candidate_lines(
    conv: ConversationSnapshot,
    strategy: str,
    agents: Sequence[AgentSnapshot],
    rr_last: str | None,
    now: float,
) -> list[dict[str, Any]]:
    """Each agent of the conversation's queue: its score under the queue's strategy, or
    what excludes it."""
    out: list[dict[str, Any]] = []
    for agent in sorted(agents, key=lambda a: a.id):
        if conv.queue not in agent.queues:
            continue
        problems = _exclusion(agent, conv.queue, conv.required_skills)
        if agent.id in conv.exclude:
            problems.append(DECLINED)
        line: dict[str, Any] = {"agent": agent.id, "eligible": not problems}
        if problems:
            line["excluded"] = problems
        else:
            load = f"load {agent.load}/{agent.capacity}"
            if strategy == "skills":
                line["score"] = f"skill score {_skill_score(agent, conv.required_skills)}; {load}"
            elif strategy == "longest_idle":
                line["score"] = _idle_text(agent, now)
            elif strategy == "round_robin":
                after = rr_last is not None and agent.id > rr_last
                line["score"] = f"{load}; " + (
                    f"after {rr_last} in turn" if after else "in turn order by id"
                )
            else:
                line["score"] = load
        out.append(line)
    return out


def explain(
    config: RoutingConfig,
    facts: MessageFacts,
    agents: Sequence[AgentSnapshot],
    rr_last: Mapping[str, str],
    now: float,
) -> Explanation:
    """Classify `facts` (with a bot's handoff when they carry one), then decide among
    `agents` as a new conversation would be decided."""
    cls = (
        classify(config, facts)
        if facts.handoff is None
        else route_handoff(config, facts, facts.handoff)
    )
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
    candidates = (
        candidate_lines(conv, queue.strategy, agents, rr_last.get(cls.queue), now) if queue else []
    )
    source, esc = config.escalation_for(cls.rules)
    return Explanation(cls, decision, candidates, describe(esc, source, now, 0))
