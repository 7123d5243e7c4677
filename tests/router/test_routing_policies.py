"""Issue 12 in the pure router: `continue: true`, escalation steps on a clock, and the
planner's exclusions and sticky agents (the same decisions as the explaining `plan`)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from pydantic import ValidationError

from router import MessageFacts, RoutingConfig, classify, plan, plan_assignments
from router.policies import Escalation, Routed, describe, escalate
from tests.router.snapshots import NOW
from tests.router.test_routing_planner import scenario

README_ROUTING: dict[str, Any] = {
    "queues": [{"name": "general"}, {"name": "billing"}, {"name": "vip"}],
    "default": {"queue": "general", "priority": "normal"},
    "rules": [
        {
            "name": "vip-customers",
            "when": {"contact": {"segment": "vip"}},
            "then": {"queue": "vip", "priority": "high", "tags": ["vip"]},
            "continue": True,
        },
        {
            "name": "billing",
            "when": {"text": {"contains": ["refund", "invoice"]}},
            "then": {"queue": "billing", "skills": {"billing": 5}, "tags": ["billing"]},
        },
        {
            "name": "outage",
            "when": {"text": {"regex": "(?i)\\b(down|outage)\\b"}},
            "then": {"priority": "urgent", "skills": {"technical": 5}, "tags": ["incident"]},
        },
    ],
}


def facts(text: str, **attrs: str) -> MessageFacts:
    return MessageFacts("api", "api", text, None, attrs)


@pytest.mark.parametrize(
    ("text", "attrs", "queue", "priority", "skills", "tags", "rules"),
    [
        # The README's example: a VIP's outage is urgent and needs a technical agent.
        (
            "our site is down",
            {"segment": "vip"},
            "vip",
            "urgent",
            {"technical": 5},
            ["vip", "incident"],
            ["vip-customers", "outage"],
        ),
        # A VIP asking for a refund: the first queue given (vip) stays, skills are added.
        (
            "refund please, and the site is down",
            {"segment": "vip"},
            "vip",
            "high",
            {"billing": 5},
            ["vip", "billing"],
            ["vip-customers", "billing"],
        ),
        # Without `continue` the first match still wins: billing stops before outage.
        (
            "refund please, and the site is down",
            {},
            "billing",
            "normal",
            {"billing": 5},
            ["billing"],
            ["billing"],
        ),
        ("hello", {"segment": "vip"}, "vip", "high", {}, ["vip"], ["vip-customers"]),
        ("hello", {}, "general", "normal", {}, [], []),
    ],
)
def test_continue_lets_later_rules_add(
    text: str,
    attrs: dict[str, str],
    queue: str,
    priority: str,
    skills: dict[str, int],
    tags: list[str],
    rules: list[str],
) -> None:
    config = RoutingConfig.model_validate(README_ROUTING)
    out = classify(config, facts(text, **attrs))
    assert (out.queue, out.priority, out.required_skills, out.tags, out.rules) == (
        queue,
        priority,
        skills,
        tags,
        rules,
    )
    assert [m.rule for m in out.matches] == rules


def test_explain_names_every_rule_that_matched_and_what_it_set() -> None:
    config = RoutingConfig.model_validate(README_ROUTING)
    out = classify(config, facts("our site is down", segment="vip"))
    assert [(m.rule, m.set) for m in out.matches] == [
        ("vip-customers", {"queue": "vip", "priority": "high", "tags": ["vip"]}),
        ("outage", {"priority": "urgent", "skills": {"technical": 5}, "tags": ["incident"]}),
    ]
    assert out.reasons[0].startswith("rule 'vip-customers' matched: contact segment is 'vip'")


ESC = Escalation.model_validate(
    {
        "steps": [
            {"after": "2m", "skills": {"billing": 4, "french": None}},
            {"after": "10m", "queue": "overflow"},
            {"after": "20m", "priority": "high", "clear_skills": True},
        ],
        "after_last": "notify",
        "notify_after": "5m",
    }
)
START = Routed("billing", 1, {"billing": 8, "french": 6})


@pytest.mark.parametrize(
    ("waited", "step", "queue", "priority", "skills", "next_due", "exhausted"),
    [
        (0, 0, "billing", 1, {"billing": 8, "french": 6}, 120, False),
        (119, 0, "billing", 1, {"billing": 8, "french": 6}, 120, False),
        (120, 1, "billing", 1, {"billing": 4}, 600, False),
        (600, 2, "overflow", 1, {"billing": 4}, 1200, False),
        (1200, 3, "overflow", 2, {}, 1500, False),
        (1500, 4, "overflow", 2, {}, None, True),
        (99999, 4, "overflow", 2, {}, None, True),
    ],
)
def test_escalation_steps_on_the_clock(
    waited: float,
    step: int,
    queue: str,
    priority: int,
    skills: dict[str, int],
    next_due: float | None,
    exhausted: bool,
) -> None:
    out = escalate(ESC, START, 1000.0, 0, 1000.0 + waited)
    assert (out.step, out.routed.queue, out.routed.priority, out.routed.skills) == (
        step,
        queue,
        priority,
        skills,
    )
    assert out.next_due == (None if next_due is None else 1000.0 + next_due)
    assert out.exhausted == exhausted


def test_a_step_never_narrows_and_steps_applied_are_not_applied_again() -> None:
    widened = escalate(ESC, Routed("billing", 3, {"billing": 2}), 0.0, 0, 120.0)
    assert widened.routed == Routed("billing", 3, {"billing": 2})  # 4 > 2: not raised
    assert widened.changes == ["step 1: nothing left to widen"]
    again = escalate(ESC, widened.routed, 0.0, widened.step, 130.0)
    assert again.step == 1 and again.changes == []
    # Priority never lowered: an urgent conversation stays urgent at step 3.
    assert escalate(ESC, Routed("b", 3, {}), 0.0, 0, 1200.0).routed.priority == 3


def test_describe_shows_the_current_step_and_what_comes() -> None:
    shown = describe(ESC, "billing", 1000.0, 1)
    assert (shown["step"], shown["of"], shown["next_at"]) == (1, 3, 1600.0)
    assert [s["done"] for s in shown["steps"]] == [True, False, False]
    assert shown["steps"][0]["does"] == "billing>=4 at most; no french requirement"


@pytest.mark.parametrize(
    ("escalation", "message"),
    [
        ({"steps": [{"after": "5m", "queue": "x"}]}, "after_last"),
        ({"steps": [{"after": "5m"}], "after_last": "stay"}, "changes something"),
        (
            {
                "steps": [{"after": "5m", "queue": "a"}, {"after": "5m", "queue": "b"}],
                "after_last": "stay",
            },
            "longer than the previous",
        ),
    ],
)
def test_escalation_config_mistakes_are_refused(escalation: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Escalation.model_validate(escalation)


def test_an_escalation_step_naming_an_unknown_queue_is_refused() -> None:
    routing = dict(README_ROUTING)
    routing["rules"] = [
        {
            **README_ROUTING["rules"][1],
            "escalation": {"steps": [{"after": "1m", "queue": "nope"}], "after_last": "stay"},
        }
    ]
    with pytest.raises(ValidationError, match=r"rules\.0\.escalation\.steps\.0\.queue"):
        RoutingConfig.model_validate(routing)


@pytest.mark.parametrize("seed", range(150))
def test_planner_honours_exclusions_and_sticky_agents_as_plan_does(seed: int) -> None:
    waiting, queues, agents, rr_last = scenario(seed)
    rng = random.Random(seed * 7 + 1)
    ids = [a.id for a in agents]
    waiting = [
        dataclasses.replace(
            c,
            exclude=frozenset(rng.sample(ids, min(len(ids), rng.randint(0, 3)))),
            sticky=rng.choice([None, None, *ids]) if ids else None,
        )
        for c in waiting
    ]
    reference = [
        (d.conversation_id, d.agent_id, d.strategy, d.reasons[-1])
        for d in plan(waiting, queues, agents, rr_last, NOW)
        if d.agent_id is not None
    ]
    fast = [
        (d.conversation_id, d.agent_id, d.strategy, d.reasons[-1])
        for d in plan_assignments(waiting, queues, agents, rr_last, NOW)
    ]
    assert fast == reference
    by_id = {c.id: c for c in waiting}
    for conv_id, agent_id, _, _ in fast:
        assert agent_id not in by_id[conv_id].exclude
