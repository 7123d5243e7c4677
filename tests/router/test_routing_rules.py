"""Classification: conditions, first match wins, default fallback, reasons."""

from typing import Any

import pytest

from router import Condition, MessageFacts, RoutingConfig, classify, explain_condition


def facts(
    text: str = "hello",
    *,
    channel: str = "web",
    channel_type: str = "webchat",
    subject: str | None = None,
    contact: dict[str, str] | None = None,
) -> MessageFacts:
    return MessageFacts(channel, channel_type, text, subject, contact or {})


def cond(data: dict[str, Any]) -> Condition:
    return Condition.model_validate(data)


CASES: list[tuple[str, dict[str, Any], MessageFacts, str | None]] = [
    # channel
    ("channel-str", {"channel": "web"}, facts(), "channel is 'web'"),
    ("channel-str-no", {"channel": "mail"}, facts(), None),
    ("channel-list", {"channel": ["mail", "web"]}, facts(), "channel is 'web'"),
    ("channel-case", {"channel": "WEB"}, facts(), "channel is 'web'"),
    # channel_type
    ("type-str", {"channel_type": "sms"}, facts(channel_type="sms"), "channel_type is 'sms'"),
    ("type-str-no", {"channel_type": "sms"}, facts(channel_type="email"), None),
    (
        "type-list",
        {"channel_type": ["sms", "whatsapp"]},
        facts(channel_type="whatsapp"),
        "channel_type is 'whatsapp'",
    ),
    # text contains
    ("contains-str", {"text": {"contains": "refund"}}, facts("a refund pls"), "text contains"),
    (
        "contains-case",
        {"text": {"contains": "ReFuNd"}},
        facts("I WANT A REFUND"),
        "text contains 'refund'",
    ),
    (
        "contains-any-of",
        {"text": {"contains": ["invoice", "refund"]}},
        facts("my refund"),
        "text contains 'refund'",
    ),
    ("contains-none", {"text": {"contains": ["invoice", "refund"]}}, facts("hi"), None),
    # text regex: searched in the original text, case-sensitive unless (?i)
    (
        "regex",
        {"text": {"regex": r"order #\d+"}},
        facts("about order #123"),
        "text matches regex",
    ),
    ("regex-case-sensitive", {"text": {"regex": "Order"}}, facts("order"), None),
    ("regex-icase", {"text": {"regex": "(?i)ORDER"}}, facts("order"), "text matches regex"),
    (
        "contains-and-regex-both-hold",
        {"text": {"contains": "order", "regex": r"\d+"}},
        facts("order 5"),
        "text contains 'order' and matches regex",
    ),
    (
        "contains-and-regex-one-fails",
        {"text": {"contains": "order", "regex": r"\d+"}},
        facts("order five"),
        None,
    ),
    # subject
    (
        "subject-regex",
        {"subject": {"regex": "(?i)billing"}},
        facts(subject="Billing question"),
        "subject matches regex '(?i)billing'",
    ),
    (
        "subject-contains",
        {"subject": {"contains": "invoice"}},
        facts(subject="INVOICE 42"),
        "subject contains 'invoice'",
    ),
    ("subject-missing", {"subject": {"contains": "invoice"}}, facts("invoice"), None),
    ("subject-not-text", {"subject": {"contains": "invoice"}}, facts("invoice", subject="x"), None),
    ("text-not-subject", {"text": {"contains": "invoice"}}, facts("x", subject="invoice"), None),
    # contact
    (
        "contact",
        {"contact": {"segment": "vip"}},
        facts(contact={"segment": "VIP"}),
        "contact segment is 'VIP'",
    ),
    (
        "contact-key-case",
        {"contact": {"Segment": "vip"}},
        facts(contact={"segment": "vip"}),
        "contact Segment is 'vip'",
    ),
    (
        "contact-list",
        {"contact": {"plan": ["pro", "enterprise"]}},
        facts(contact={"plan": "Enterprise"}),
        "contact plan is 'Enterprise'",
    ),
    ("contact-list-no", {"contact": {"plan": ["pro"]}}, facts(contact={"plan": "free"}), None),
    ("contact-missing", {"contact": {"segment": "vip"}}, facts(contact={"plan": "vip"}), None),
    (
        "contact-bool-as-string",
        {"contact": {"vip": True}},
        facts(contact={"vip": "true"}),
        "contact vip is 'true'",
    ),
    (
        "contact-all-attributes",
        {"contact": {"segment": "vip", "language": "de"}},
        facts(contact={"segment": "vip", "language": "fr"}),
        None,
    ),
    # all / any / not
    (
        "all",
        {"all": [{"channel_type": "sms"}, {"text": {"contains": "help"}}]},
        facts("help me", channel_type="sms"),
        "channel_type is 'sms' and text contains 'help'",
    ),
    (
        "all-one-fails",
        {"all": [{"channel_type": "sms"}, {"text": {"contains": "help"}}]},
        facts("help me", channel_type="email"),
        None,
    ),
    (
        "any-second",
        {"any": [{"channel_type": "sms"}, {"text": {"contains": "help"}}]},
        facts("help me", channel_type="email"),
        "text contains 'help'",
    ),
    (
        "any-none",
        {"any": [{"channel_type": "sms"}, {"text": {"contains": "help"}}]},
        facts("hi", channel_type="email"),
        None,
    ),
    (
        "not-holds",
        {"not": {"text": {"contains": "urgent"}}},
        facts("calm"),
        "not (text contains 'urgent')",
    ),
    ("not-fails", {"not": {"text": {"contains": "urgent"}}}, facts("URGENT!"), None),
    ("double-not", {"not": {"not": {"channel": "web"}}}, facts(), "not (not (channel is 'web'))"),
    # several keys in one mapping: all must hold
    (
        "multi-key",
        {"channel_type": "sms", "text": {"contains": "stop"}},
        facts("STOP", channel_type="sms"),
        "channel_type is 'sms' and text contains 'stop'",
    ),
    (
        "multi-key-one-fails",
        {"channel_type": "sms", "text": {"contains": "stop"}},
        facts("STOP", channel_type="email"),
        None,
    ),
]


@pytest.mark.parametrize(
    ("data", "message", "expected"),
    [pytest.param(d, m, e, id=name) for name, d, m, e in CASES],
)
def test_condition(data: dict[str, Any], message: MessageFacts, expected: str | None) -> None:
    why = explain_condition(cond(data), message)
    if expected is None:
        assert why is None
    else:
        assert why is not None
        assert expected in why


CONFIG = RoutingConfig.model_validate(
    {
        "queues": [
            {"name": "general"},
            {"name": "billing", "strategy": "skills"},
            {"name": "priority", "strategy": "least_busy"},
        ],
        "default": {"queue": "general", "priority": "normal", "tags": ["triage"]},
        "rules": [
            {
                "name": "vip",
                "when": {"contact": {"segment": "vip"}},
                "then": {"queue": "priority", "priority": "high", "tags": ["vip"]},
            },
            {
                "name": "billing",
                "when": {
                    "any": [
                        {"text": {"contains": ["invoice", "refund"]}},
                        {"subject": {"regex": "(?i)billing"}},
                    ]
                },
                "then": {"queue": "billing", "skills": {"billing": 5}, "tags": ["billing"]},
            },
            {
                "name": "sms-not-urgent",
                "when": {
                    "all": [{"channel_type": "sms"}, {"not": {"text": {"contains": "urgent"}}}]
                },
                "then": {"priority": "low"},
            },
        ],
    }
)


def test_first_matching_rule_wins() -> None:
    # Matches both "vip" and "billing": the first one listed decides.
    result = classify(CONFIG, facts("refund please", contact={"segment": "vip"}))
    assert result.rule == "vip"
    assert result.queue == "priority"
    assert result.priority == "high"
    assert result.tags == ["vip"]
    assert result.required_skills == {}
    assert result.reasons[0] == "rule 'vip' matched: contact segment is 'vip'"


def test_rule_with_reason_and_priority_from_default() -> None:
    result = classify(CONFIG, facts("Where is my REFUND?"))
    assert result.rule == "billing"
    assert result.queue == "billing"
    assert result.priority == "normal"
    assert result.required_skills == {"billing": 5}
    assert result.tags == ["billing"]
    assert result.reasons == [
        "rule 'billing' matched: text contains 'refund'",
        "priority 'normal' from default",
    ]


def test_partial_action_falls_back_to_default() -> None:
    result = classify(CONFIG, facts("hi", channel="phone", channel_type="sms"))
    assert result.rule == "sms-not-urgent"
    assert result.priority == "low"
    assert result.queue == "general"  # from default
    assert result.tags == ["triage"]  # not given by the rule: default's
    assert "queue 'general' from default" in result.reasons


def test_negated_rule_skipped_then_default() -> None:
    result = classify(CONFIG, facts("URGENT: down", channel_type="sms"))
    assert result.rule is None
    assert result.queue == "general"
    assert result.priority == "normal"
    assert result.tags == ["triage"]
    assert result.reasons == ["no rule matched; default queue 'general'"]


def test_result_does_not_alias_config() -> None:
    result = classify(CONFIG, facts("refund"))
    result.required_skills["x"] = 1
    result.tags.append("y")
    again = classify(CONFIG, facts("refund"))
    assert again.required_skills == {"billing": 5}
    assert again.tags == ["billing"]


def test_classify_is_fast() -> None:
    import time

    message = facts("some long text " * 200 + " nothing to see", subject="Hello")
    start = time.perf_counter()
    for _ in range(5000):
        classify(CONFIG, message)
    assert time.perf_counter() - start < 2.0
