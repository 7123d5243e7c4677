"""Who is asked what and when: the caps and exclusions as a table, on an injected clock;
and what a typed reply means."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.config import ConfigError, load_config_text
from gateway.config_surveys import SurveysConfig
from gateway.model import Conversation
from gateway.store.base import SurveyFacts
from gateway.surveys.policy import Decision, Reply, decide, read_reply, read_score
from tests.gateway.conftest import base_config, config_text

NOW = 1_800_000_000.0
DAY = 86400.0


def facts(**over: Any) -> SurveyFacts:
    conv = Conversation(
        id="cv_1",
        contact_id="ct_1",
        channel="sms",
        channel_kind="twilio_sms",
        last_channel="sms",
        status="resolved",
        queue="general",
        priority=1,
        created_at=NOW - DAY,
        updated_at=NOW - 3600,
        resolved_at=NOW - 3600,
        last_inbound_at=NOW - 7200,
    )
    base = SurveyFacts(
        conversation=conv,
        contact_attributes={},
        opted_out=False,
        automated=False,
        bounced=False,
        last_sent={},
        recent_surveys=0,
        recent_automatic=0,
    )
    conv_over = over.pop("conv", {})
    for key, value in conv_over.items():
        setattr(base.conversation, key, value)
    return replace(base, **over)


CFG = SurveysConfig.model_validate(
    {
        "csat": {"enabled": True, "queues": ["general"]},
        "nps": {"enabled": True, "queues": ["*"], "interval": "90d"},
        "max_per_contact": 2,
        "window": "30d",
        "max_automatic": 4,
    }
)
CSAT_ONLY = SurveysConfig.model_validate({"csat": {"enabled": True, "queues": ["general"]}})
CES = SurveysConfig.model_validate(
    {"csat": {"enabled": True}, "ces": {"enabled": True, "queues": ["billing"]}}
)
WA_TEMPLATE = SurveysConfig.model_validate(
    {"whatsapp_template": {"content_sid": "HX" + "a" * 32, "variables": {"1": "{text}"}}}
)


@pytest.mark.parametrize(
    ("cfg", "case", "channel_kind", "expected"),
    [
        # NPS first when the contact was not asked within the interval
        (CFG, facts(), "twilio_sms", Decision("nps", "sent")),
        (CFG, facts(last_sent={"nps": NOW - 89 * DAY}), "twilio_sms", Decision("csat", "sent")),
        (CFG, facts(last_sent={"nps": NOW - 90 * DAY}), "twilio_sms", Decision("nps", "sent")),
        # per queue opt-in: NPS covers every queue, CSAT only `general`
        (
            CFG,
            facts(conv={"queue": "billing"}, last_sent={"nps": NOW - DAY}),
            "twilio_sms",
            Decision(None, "not_due"),
        ),
        (CSAT_ONLY, facts(conv={"queue": "billing"}), "twilio_sms", Decision(None, "not_due")),
        (CSAT_ONLY, facts(), "twilio_sms", Decision("csat", "sent")),
        # CES (optional) where opted in, CSAT elsewhere
        (CES, facts(conv={"queue": "billing"}), "twilio_sms", Decision("ces", "sent")),
        (CES, facts(), "twilio_sms", Decision("csat", "sent")),
        # never: opted out, automated, bounced
        (CFG, facts(opted_out=True), "twilio_sms", Decision(None, "opted_out")),
        (CFG, facts(automated=True), "twilio_sms", Decision(None, "automated")),
        (CFG, facts(bounced=True), "twilio_sms", Decision(None, "bounced")),
        # the caps: surveys per contact per window, and the automatic-message loop guard
        (CFG, facts(recent_surveys=1), "twilio_sms", Decision("nps", "sent")),
        (CFG, facts(recent_surveys=2), "twilio_sms", Decision(None, "contact_cap")),
        (CSAT_ONLY, facts(recent_surveys=1), "twilio_sms", Decision(None, "contact_cap")),
        (CFG, facts(recent_automatic=3), "twilio_sms", Decision("nps", "sent")),
        (CFG, facts(recent_automatic=4), "twilio_sms", Decision(None, "loop_guard")),
        # WhatsApp: free text inside the 24-hour window, else the template, else nothing
        (
            CSAT_ONLY,
            facts(conv={"last_inbound_at": NOW - 23 * 3600}),
            "twilio_whatsapp",
            Decision("csat", "sent"),
        ),
        (
            CSAT_ONLY,
            facts(conv={"last_inbound_at": NOW - 25 * 3600}),
            "twilio_whatsapp",
            Decision(None, "whatsapp_window_closed"),
        ),
        (
            WA_TEMPLATE,
            facts(conv={"last_inbound_at": NOW - 25 * 3600}),
            "twilio_whatsapp",
            Decision("csat", "sent", template=True),
        ),
        # only the configured channels
        (
            SurveysConfig.model_validate({"channels": ["email"]}),
            facts(),
            "twilio_sms",
            Decision(None, "channel_not_enabled"),
        ),
    ],
)
def test_decide(
    cfg: SurveysConfig, case: SurveyFacts, channel_kind: str, expected: Decision
) -> None:
    assert decide(case, cfg, channel_kind, NOW) == expected


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("4", "csat", Reply(score=4)),
        (" 5 ", "csat", Reply(score=5)),
        ("5!", "csat", Reply(score=5)),
        ("4 - quick and friendly", "csat", Reply(score=4, comment="quick and friendly")),
        ("3. Zu lange gewartet", "csat", Reply(score=3, comment="Zu lange gewartet")),
        ("10", "nps", Reply(score=10)),
        ("0", "nps", Reply(score=0)),
        ("7", "ces", Reply(score=7)),
        ("6", "csat", None),  # out of the scale: a message like any other
        ("0", "csat", None),
        ("11", "nps", None),
        ("123", "csat", None),
        ("my printer broke again", "csat", None),
        ("", "csat", None),
        # an email reply: the quoted question under the answer is not the comment
        (
            "4 thanks\n\nOn Mon, 2 Mar 2026, Support <s@example.com> wrote:\n> How satisfied?",
            "csat",
            Reply(score=4, comment="thanks"),
        ),
        ("5\r\n\r\n> How satisfied are you?\r\n> 1 = very dissatisfied", "csat", Reply(score=5)),
        ("2\nAm 02.03.2026 schrieb Support:\n> Wie zufrieden?", "csat", Reply(score=2)),
        ("STOP", "csat", Reply(stop=True)),
        ("Stopp.", "nps", Reply(stop=True)),
        ("keine Umfragen!", "csat", Reply(stop=True)),
        ("stop the printer from jamming", "csat", None),
    ],
)
def test_read_reply(text: str, kind: str, expected: Reply | None) -> None:
    assert read_reply(text, kind) == expected


def test_read_score() -> None:
    assert read_score("3", "csat") == 3
    assert read_score("6", "csat") is None
    assert read_score("x", "nps") is None
    assert read_score(None, "ces") is None


def test_survey_config_names_only_known_queues_and_channels(tmp_path: Any) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["surveys"] = {
        "delay": "2h",
        "csat": {"enabled": True, "queues": ["general", "nope"]},
        "channels": ["fax"],
    }
    with pytest.raises(ConfigError) as err:
        load_config_text(config_text(cfg))
    found = {(p.path.split(" ")[0], p.message) for p in err.value.problems}
    assert ("surveys.csat.queues[1]", "unknown queue 'nope'") in found
    assert ("surveys.channels[0]", "unknown channel 'fax'") in found
    cfg["surveys"] = {"delay": "2h", "csat": {"queues": ["general"]}}
    loaded = load_config_text(config_text(cfg))
    assert loaded.config.surveys is not None and loaded.config.surveys.delay == 7200.0
