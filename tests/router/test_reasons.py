"""Routing reasons in English and German: the catalog is complete, the English text is the
one the router always gave, and a German agent reads a classification and an assignment in
German, with the data (rule, queue and agent names, quoted values) left as they are."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from router import Handoff, MessageFacts, QueueConfig, RoutingConfig, classify, decide, plan
from router.handoff import route_handoff
from router.policies import Routed, escalate
from router.reasons import (
    CATALOG,
    LANGUAGES,
    Reason,
    extend_localized,
    fields,
    localize,
    localized_of,
    render,
)
from router.schedule import place
from tests.router.snapshots import NOW, agent, conv

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_has_a_template_in_each_language_with_the_same_parameters() -> None:
    for key, templates in CATALOG.items():
        assert set(templates) == set(LANGUAGES), key
        assert all(templates[lang].strip() for lang in LANGUAGES), key
        if key.startswith("join."):
            continue
        assert fields(templates["de"]) == fields(templates["en"]), key


def test_every_key_the_code_names_is_in_the_catalog() -> None:
    literal = re.compile(r"""Reason\(\s*"([a-z_.]+)"|f"(cond|agent|field)\.\{""")
    keys: set[str] = set()
    for source in [*ROOT.glob("router/*.py"), *ROOT.glob("gateway/**/*.py")]:
        for m in literal.finditer(source.read_text()):
            if m.group(1):
                keys.add(m.group(1))
    assert len(keys) > 30
    assert sorted(k for k in keys if k not in CATALOG) == []
    # the keys built from a name: conditions, presence, handoff labels and `sets` fields
    dynamic = {"cond.channel", "cond.channel_type", "cond.text", "cond.subject"}
    dynamic |= {"cond.channel_in", "cond.channel_type_in"}
    dynamic |= {f"join.{sep}" for sep in ("and", "or", "comma", "semicolon")}
    dynamic |= {"agent.away", "agent.offline"}
    fields_ = ("queue", "priority", "skills", "tags", "reason", "skill", "language")
    dynamic |= {f"field.{f}" for f in fields_}
    assert dynamic <= set(CATALOG)


def test_a_reason_is_its_english_text_and_survives_pickling() -> None:
    r = Reason("rule.matched", rule="'billing'", why=Reason("cond.contains", value="'x'"))
    assert r == "rule 'billing' matched: contains 'x'" and isinstance(r, str)
    back = pickle.loads(pickle.dumps(r))
    assert render(back, "de") == "Regel 'billing' trifft zu: enthält 'x'"
    assert render("a plain string", "de") == "a plain string"


def _config() -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "queues": [{"name": "billing", "strategy": "skills"}, {"name": "general"}],
            "rules": [
                {
                    "name": "vip",
                    "when": {"contact": {"segment": "vip"}},
                    "then": {"priority": "high", "tags": ["vip"]},
                    "continue": True,
                },
                {
                    "name": "billing",
                    "when": {
                        "text": {"contains": ["rechnung", "invoice"]},
                        "not": {"channel": "sms"},
                    },
                    "then": {"queue": "billing", "skills": {"billing": 5}},
                },
            ],
            "default": {"queue": "general"},
        }
    )


def test_a_classification_and_an_assignment_read_right_in_german() -> None:
    facts = MessageFacts("web", "webchat", "Frage zur Rechnung", None, {"segment": "VIP"})
    cls = classify(_config(), facts)
    assert cls.reasons == [
        "rule 'vip' matched: contact segment is 'VIP'; sets priority high; tags vip",
        "rule 'billing' matched: text contains 'rechnung' and not (channel is 'sms'); "
        "sets queue billing; skills billing>=5",
    ]
    assert [render(r, "de") for r in cls.reasons] == [
        "Regel 'vip' trifft zu: Kontaktattribut segment ist 'VIP'; setzt Priorität high; Tags vip",
        "Regel 'billing' trifft zu: Text enthält 'rechnung' und nicht (Kanal ist 'sms'); "
        "setzt Warteschlange billing; Skills billing>=5",
    ]
    agents = [
        agent("alice", queues=("billing",), skills={"billing": 8}, load=1),
        agent("bob", queues=("billing",), skills={"billing": 3}),
        agent("carol", queues=("billing",), presence="offline", skills={"billing": 9}),
    ]
    decision = decide(
        conv(queue="billing", skills={"billing": 5}), QueueConfig(name="billing", strategy="skills"),
        agents, None, NOW,
    )  # fmt: skip
    assert decision.agent_id == "alice"
    assert localize(decision.reasons) == {
        "en": [
            "bob: lacks skill billing>=5 (has 3)",
            "carol: offline",
            "alice chosen by skills; skill score 8; load 1/3",
        ],
        "de": [
            "bob: Skill billing>=5 fehlt (hat 3)",
            "carol: offline",
            "alice gewählt nach skills; Skill-Wert 8; Auslastung 1/3",
        ],
    }


def test_the_other_reasons_of_the_router_in_german() -> None:
    config = _config()
    none = classify(config, MessageFacts("web", "webchat", "hallo", None, {}))
    assert (
        render(none.reasons[0], "de") == "keine Regel trifft zu; Standard-Warteschlange 'general'"
    )
    waits = decide(
        conv(queue="q"), QueueConfig(name="q"), [agent("erin", presence="away", load=3)], None, NOW
    )
    assert localize(waits.reasons)["de"] == [
        "erin: abwesend, ausgelastet 3/3",
        "kein passender Agent in Warteschlange 'q'; die Konversation wartet",
    ]
    [unknown] = plan([conv(queue="nope")], {}, [], {}, NOW)
    assert render(unknown.reasons[0], "de") == (
        "unbekannte Warteschlange 'nope'; die Konversation wartet"
    )
    handoff = Handoff("billing", language="de", skills=("billing",), priority="urgent")
    cls = route_handoff(config, MessageFacts("web", "webchat", "x", None, {}), handoff)
    assert cls.reasons[0] == (
        "bot handed off: reason 'billing'; language 'de'; skills 'billing'; priority 'urgent'"
    )
    assert [render(r, "de") for r in (cls.reasons[0], cls.reasons[-1])] == [
        "Bot hat übergeben: Grund 'billing'; Sprache 'de'; Skills 'billing'; Priorität 'urgent'",
        "Priorität 'urgent' aus der Übergabe",
    ]


def test_a_closed_queue_says_so_in_german() -> None:
    config = RoutingConfig.model_validate(
        {
            "queues": [
                {"name": "general", "hours": "office"},
                {
                    "name": "billing",
                    "hours": "office",
                    "out_of_hours": {"action": "overflow", "overflow": "night"},
                },
                {"name": "night"},
            ],
            "hours": {"office": {"timezone": "UTC", "weekly": {"mon": ["09:00-17:00"]}}},
            "default": {"queue": "general"},
        }
    )
    parked, moved = place(config, "general", NOW), place(config, "billing", NOW)  # a Thursday
    assert (parked.reason, moved.reason) == (
        "queue 'general' is closed: the conversation waits for the opening",
        "queue 'billing' is closed: overflow to 'night', which is open",
    )
    assert [render(r or "", "de") for r in (parked.reason, moved.reason)] == [
        "Warteschlange 'general' ist geschlossen: die Konversation wartet auf die Öffnung",
        "Warteschlange 'billing' ist geschlossen: Überlauf nach 'night', die geöffnet ist",
    ]


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        ({"reasons": ["old"]}, {"en": ["old", "offline"], "de": ["old", "offline"]}),
        (
            {"reasons": ["r"], "reasons_localized": {"en": ["r"], "de": ["R"]}},
            {"en": ["r", "offline"], "de": ["R", "offline"]},
        ),
    ],
)
def test_reasons_stored_before_fall_back_to_english(
    routing: dict[str, object], expected: dict[str, list[str]]
) -> None:
    assert localized_of({"reasons": ["old"]}) == {"en": ["old"]}
    assert extend_localized(routing, [Reason("agent.offline")]) == expected


def test_escalation_steps_say_what_they_changed_in_german() -> None:
    from tests.router.test_routing_policies import ESC, START

    out = escalate(ESC, START, 0.0, 0, 1200.0)
    assert out.changes == [
        "requires billing>=4 (was 8)",
        "no longer requires french",
        "moved to queue 'overflow' (was 'billing')",
        "requires no skill any more (was billing>=4)",
        "priority high (was normal)",
    ]
    assert localize(out.changes)["de"] == [
        "erfordert billing>=4 (vorher 8)",
        "erfordert french nicht mehr",
        "in Warteschlange 'overflow' verschoben (vorher 'billing')",
        "erfordert keinen Skill mehr (vorher billing>=4)",
        "Priorität high (vorher normal)",
    ]
    nothing = escalate(ESC, Routed("billing", 3, {"billing": 2}), 0.0, 0, 120.0)
    assert localize(nothing.changes)["de"] == ["Stufe 1: nichts mehr zu lockern"]
