"""A bot's structured handoff as routing facts (issue 15), pure.

An external bot (gateway/bots/) that gives a conversation to a person says why (`reason`),
what it learnt (`summary`), the language it detected, the skills it needs and a priority.
The rules read these through `when: {handoff: {reason: billing}}` (router/rules.py), and
`route_handoff` classifies the conversation again with them: rules with a `handoff`
condition hold only now, so they are written above the rule that has the `bot`. A
handoff's priority only raises the one the rules give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import PRIORITY_RANK, Condition, RoutingConfig
from .reasons import Reason, join
from .rules import Classification, MessageFacts, classify


@dataclass(frozen=True)
class Handoff:
    """What a bot said when it handed off; `reason` is always set (`bot_failed`,
    `timeout`, `keyword`, `max_turns` when the gateway decided for it)."""

    reason: str
    summary: str | None = None
    language: str | None = None
    skills: tuple[str, ...] = ()
    priority: str | None = None

    def values(self, key: str) -> list[str]:
        """The values of one `handoff` condition key, lower-cased ([] when unset)."""
        if key == "skills":
            return [s.lower() for s in self.skills]
        value = getattr(self, key, None)
        return [] if value is None else [str(value).lower()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "summary": self.summary,
            "language": self.language,
            "skills": list(self.skills),
            "priority": self.priority,
        }


def handoff_text(handoff: Handoff) -> Reason:
    """One line for the routing reasons: what the bot handed off with."""
    parts = [Reason("handoff.reason", value=repr(handoff.reason))]
    if handoff.language:
        parts.append(Reason("handoff.language", value=repr(handoff.language)))
    if handoff.skills:
        parts.append(Reason("handoff.skills", values=", ".join(repr(s) for s in handoff.skills)))
    if handoff.priority:
        parts.append(Reason("handoff.priority", value=repr(handoff.priority)))
    return Reason("handoff.by_bot", parts=join("semicolon", parts))


def route_handoff(config: RoutingConfig, facts: MessageFacts, handoff: Handoff) -> Classification:
    """Classify `facts` (the conversation's first message) again with the handoff's facts;
    the handoff's priority raises the rules' one."""
    with_handoff = MessageFacts(
        facts.channel,
        facts.channel_type,
        facts.text,
        facts.subject,
        facts.contact_attributes,
        handoff,
    )
    cls = classify(config, with_handoff)
    reasons = [handoff_text(handoff), *cls.reasons]
    priority = cls.priority
    if (
        handoff.priority in PRIORITY_RANK
        and PRIORITY_RANK[handoff.priority] > PRIORITY_RANK[priority]
    ):
        priority = handoff.priority
        reasons.append(Reason("handoff.raised_priority", priority=repr(priority)))
    return Classification(
        cls.queue,
        priority,
        cls.required_skills,
        cls.tags,
        cls.rule,
        reasons,
        cls.rules,
        cls.matches,
    )


def uses_handoff(cond: Condition) -> bool:
    """Whether `cond` (or a part of it) reads a handoff's facts."""
    parts = [*(cond.all_ or []), *(cond.any_ or []), *([cond.not_] if cond.not_ else [])]
    return cond.handoff is not None or any(uses_handoff(c) for c in parts)


def handoff_order_problems(config: RoutingConfig) -> list[tuple[int, str]]:
    """Rules reading handoff facts that can never decide a handoff: no rule hands to a
    webhook bot, or they sit below the first one (which holds for the same message)."""
    out: list[tuple[int, str]] = []
    first_bot = next(
        (i for i, r in enumerate(config.rules) if getattr(r.bot, "webhook", None)), None
    )
    for i, rule in enumerate(config.rules):
        if not uses_handoff(rule.when):
            continue
        if first_bot is None:
            out.append((i, "reads handoff facts, but no rule hands conversations to a webhook bot"))
        elif i > first_bot and not config.rules[first_bot].continue_:
            out.append(
                (
                    i,
                    f"reads handoff facts below rule {config.rules[first_bot].name!r}, which "
                    "has the bot and decides first; move it above",
                )
            )
    return out
