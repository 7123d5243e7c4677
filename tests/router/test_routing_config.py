"""Validation of the `routing:` configuration block."""

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from router import PRIORITY_RANK, RoutingConfig

EXAMPLE = """
queues:
  - name: general
    strategy: round_robin
  - name: billing
    strategy: skills
  - name: priority
    strategy: least_busy
default: {queue: general, priority: normal}
rules:
  - name: vip
    when: {contact: {segment: vip}}
    then: {queue: priority, priority: high, tags: [vip]}
  - name: billing
    when:
      any:
        - text: {contains: [invoice, refund]}
        - subject: {regex: "(?i)billing"}
    then: {queue: billing, skills: {billing: 5}, tags: [billing]}
  - name: not-email-urgent
    when:
      all:
        - channel_type: sms
        - not: {text: {contains: urgent}}
    then: {priority: low}
"""


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "queues": [{"name": "general"}, {"name": "billing", "strategy": "skills"}],
        "default": {"queue": "general"},
        "rules": [],
    }
    data.update(overrides)
    return data


def rule(when: Any, then: Any | None = None, name: str = "r") -> dict[str, Any]:
    return {"name": name, "when": when, "then": then if then is not None else {}}


def errors_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        RoutingConfig.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_example_config_loads() -> None:
    config = RoutingConfig.model_validate(yaml.safe_load(EXAMPLE))
    assert [q.name for q in config.queues] == ["general", "billing", "priority"]
    assert config.queues[1].strategy == "skills"
    assert config.default.queue == "general"
    assert config.default.priority == "normal"
    assert [r.name for r in config.rules] == ["vip", "billing", "not-email-urgent"]
    billing = config.rules[1]
    assert billing.then.skills == {"billing": 5}
    assert billing.when.any_ is not None and len(billing.when.any_) == 2
    urgent = config.rules[2]
    assert urgent.when.all_ is not None
    assert urgent.when.all_[1].not_ is not None
    assert urgent.then.queue is None


def test_default_priority_is_normal_and_strategy_defaults_to_round_robin() -> None:
    config = RoutingConfig.model_validate(base())
    assert config.default.priority == "normal"
    assert config.queues[0].strategy == "round_robin"


def test_priority_rank() -> None:
    assert PRIORITY_RANK == {"low": 0, "normal": 1, "high": 2, "urgent": 3}


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        pytest.param(
            base(colour="red"), "colour", "Extra inputs are not permitted", id="unknown-top-key"
        ),
        pytest.param(
            base(hours={"office": {"timezone": "Mars/Olympus"}}),
            "hours.office.timezone",
            "unknown time zone",
            id="hours-bad-zone",
        ),
        pytest.param(
            base(default_hours="office"),
            "default_hours",
            "unknown hours 'office'",
            id="no-such-hours",
        ),
        pytest.param(
            base(rules=[rule({"text": {"contains": "x"}}, {"queue": "general", "colour": 1})]),
            "rules.0.then.colour",
            "Extra inputs are not permitted",
            id="unknown-action-key",
        ),
        pytest.param(
            base(rules=[rule({"txt": {"contains": "x"}})]),
            "rules.0.when.txt",
            "Extra inputs are not permitted",
            id="unknown-condition-key",
        ),
        pytest.param(
            base(rules=[rule({"text": {"contains": "x", "icase": True}})]),
            "rules.0.when.text.icase",
            "Extra inputs are not permitted",
            id="unknown-textmatch-key",
        ),
        pytest.param(
            base(rules=[rule({"not_": {"channel": "x"}})]),
            "rules.0.when.not_",
            "Extra inputs are not permitted",
            id="python-name-not-accepted",
        ),
        pytest.param(
            base(rules=[rule({"subject": {"regex": "(unclosed"}})]),
            "rules.0.when.subject.regex",
            "invalid regex '(unclosed': missing ), unterminated subpattern",
            id="bad-regex",
        ),
        pytest.param(
            base(rules=[rule({"channel": "x"}, {"priority": "critical"})]),
            "rules.0.then.priority",
            "Input should be 'low', 'normal', 'high' or 'urgent'",
            id="bad-priority",
        ),
        pytest.param(
            base(default={"queue": "general", "priority": "asap"}),
            "default.priority",
            "Input should be 'low', 'normal', 'high' or 'urgent'",
            id="bad-default-priority",
        ),
        pytest.param(
            base(rules=[rule({"channel": "x"}, {"skills": {"billing": 11}})]),
            "rules.0.then.skills.billing",
            "less than or equal to 10",
            id="skill-level-11",
        ),
        pytest.param(
            base(rules=[rule({"channel": "x"}, {"skills": {"billing": 0}})]),
            "rules.0.then.skills.billing",
            "greater than or equal to 1",
            id="skill-level-0",
        ),
        pytest.param(
            base(queues=[{"name": "general"}, {"name": "general"}]),
            "queues.1.name",
            "duplicate queue name 'general'",
            id="duplicate-queue",
        ),
        pytest.param(
            base(rules=[rule({"channel": "x"}, {"queue": "sales"})]),
            "rules.0.then.queue",
            "unknown queue 'sales'",
            id="rule-unknown-queue",
        ),
        pytest.param(
            base(default={"queue": "nowhere"}),
            "default.queue",
            "unknown queue 'nowhere'",
            id="default-unknown-queue",
        ),
        pytest.param(base(default={}), "default.queue", "Field required", id="default-no-queue"),
        pytest.param(
            base(queues=[{"name": "general", "strategy": "random"}]),
            "queues.0.strategy",
            "Input should be 'round_robin', 'least_busy', 'longest_idle' or 'skills'",
            id="bad-strategy",
        ),
        pytest.param(
            base(rules=[rule({})]), "rules.0.when", "empty condition", id="empty-condition"
        ),
        pytest.param(
            base(rules=[rule({"all": [{"not": {}}]})]),
            "rules.0.when.all.0.not",
            "empty condition",
            id="nested-empty-condition",
        ),
        pytest.param(
            base(rules=[rule({"any": []})]),
            "rules.0.when.any",
            "at least 1 item",
            id="empty-any",
        ),
        pytest.param(
            base(rules=[rule({"text": {}})]),
            "rules.0.when.text",
            "give 'contains' and/or 'regex'",
            id="empty-textmatch",
        ),
        pytest.param(
            base(rules=[rule({"channel": "a"}, name="x"), rule({"channel": "b"}, name="x")]),
            "rules.1.name",
            "duplicate rule name 'x'",
            id="duplicate-rule",
        ),
        pytest.param(
            base(rules=[{"when": {"channel": "a"}, "then": {}}]),
            "rules.0.name",
            "Field required",
            id="rule-without-name",
        ),
    ],
)
def test_invalid_config_names_the_problem(data: dict[str, Any], loc: str, message: str) -> None:
    errors = errors_of(data)
    matching = [msg for err_loc, msg in errors if err_loc == loc]
    assert matching, f"no error at {loc}: {errors}"
    assert any(message in msg for msg in matching), errors


def test_every_unknown_queue_is_reported_at_once() -> None:
    errors = errors_of(
        base(
            default={"queue": "nowhere"},
            rules=[
                rule({"channel": "a"}, {"queue": "general"}, name="ok"),
                rule({"channel": "b"}, {"queue": "sales"}, name="bad"),
            ],
        )
    )
    assert [loc for loc, _ in errors] == ["default.queue", "rules.1.then.queue"]
    assert "defined queues: billing, general" in errors[1][1]


def test_errors_nest_under_parent_key() -> None:
    from pydantic import BaseModel

    class Top(BaseModel):
        routing: RoutingConfig

    with pytest.raises(ValidationError) as info:
        Top.model_validate({"routing": base(rules=[rule({"channel": "a"}, {"queue": "zz"})])})
    assert [e["loc"] for e in info.value.errors()] == [("routing", "rules", 0, "then", "queue")]


def test_schema_uses_yaml_key_names() -> None:
    schema = RoutingConfig.model_json_schema()
    props = schema["$defs"]["Condition"]["properties"]
    assert {"all", "any", "not"} <= set(props)
    assert {"hours", "default_hours", "sla", "order"} <= set(schema["properties"])
