"""Handoff facts in the rules (router/handoff.py), the bot's answer format
(gateway/bots/webhook.py) and the `bots:` config as `switchboard check` reports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.bots.stage import BOT_QUEUE, WebhookBotStage
from gateway.bots.webhook import BotAnswer, BotFailure, parse_reply
from gateway.config import ConfigError, load_config_text
from gateway.i18n import Texts
from gateway.store.base import Classification
from router import Handoff, MessageFacts, RoutingConfig, classify, route_handoff
from tests.bots.conftest import BOT_SECRET, bot_config
from tests.gateway.conftest import config_text

ROUTING = RoutingConfig.model_validate(
    {
        "queues": [{"name": "general"}, {"name": "billing"}, {"name": "german"}],
        "default": {"queue": "general"},
        "rules": [
            {
                "name": "billing-handoff",
                "when": {"handoff": {"reason": ["billing", "refund"], "skills": "invoices"}},
                "then": {"queue": "billing", "skills": {"billing": 3}},
            },
            {
                "name": "german-handoff",
                "when": {"handoff": {"language": "de"}},
                "then": {"queue": "german"},
            },
            {
                "name": "bot",
                "when": {"channel_type": "sms"},
                "then": {"queue": "general"},
                "bot": {"webhook": "helper"},
            },
        ],
    }
)
SMS = MessageFacts("sms", "sms", "my invoice is wrong")


def test_handoff_rules_hold_only_for_a_handoff() -> None:
    assert classify(ROUTING, SMS).rule == "bot"
    cls = route_handoff(ROUTING, SMS, Handoff("Billing", skills=("Invoices", "vip")))
    assert (cls.queue, cls.rule, cls.required_skills) == (
        "billing",
        "billing-handoff",
        {"billing": 3},
    )
    assert cls.reasons[0] == "bot handed off: reason 'Billing'; skills 'Invoices', 'vip'"
    assert "handoff reason is 'billing' and handoff skill is 'invoices'" in cls.reasons[1]


def test_a_handoff_without_the_skill_falls_through_and_raises_the_priority_only() -> None:
    cls = route_handoff(ROUTING, SMS, Handoff("billing", language="de", priority="urgent"))
    assert (cls.queue, cls.rule, cls.priority) == ("german", "german-handoff", "urgent")
    assert cls.reasons[-1] == "priority 'urgent' from the handoff"
    low = route_handoff(ROUTING, SMS, Handoff("timeout", priority="low"))
    assert (low.queue, low.rule, low.priority) == ("general", "bot", "normal")


def test_the_bot_answer_shapes() -> None:
    answer = parse_reply(b'{"action": "ask", "text": "Which order?"}')
    assert isinstance(answer, BotAnswer) and (answer.action, answer.text) == ("ask", "Which order?")
    handoff = parse_reply(
        b'{"action": "handoff", "reason": "billing", "skills": ["a", "a", "b"], "priority": "high"}'
    )
    assert handoff == Handoff("billing", None, None, ("a", "b"), "high")
    assert parse_reply(b'{"action": "handoff"}') == Handoff("bot")
    for bad in (
        b"not json",
        b"[]",
        b'{"action": "answer"}',
        b'{"action": "answer", "text": ""}',
        b'{"action": "handoff", "priority": "asap"}',
        b'{"action": "escalate", "text": "x"}',
        # Nested deeper than any parser's stack (fits in the 64 KiB read): a failed turn
        # (the conversation goes to a person), not a RecursionError that kills the turn.
        b'{"action": "answer", "text": "x", "extra": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"action": "answer", "text": "\xff"}',
    ):
        with pytest.raises(BotFailure) as info:
            parse_reply(bad)
        assert info.value.reason == "bot_failed"


def _problems(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(config_text(cfg))
    return [str(p) for p in info.value.problems]


def test_check_reports_an_unknown_bot_and_a_bad_secret(tmp_path: Path) -> None:
    cfg = bot_config(
        {"path": str(tmp_path / "db")}, "http://127.0.0.1:9/x", "http://127.0.0.1:9/bot"
    )
    load_config_text(config_text(cfg))  # the test config itself is valid
    cfg["routing"]["rules"][1]["bot"] = {"webhook": "nobody"}
    assert any(
        "routing.rules[1].bot.webhook" in p and "unknown bot 'nobody' (bots: helper)" in p
        for p in _problems(cfg)
    )
    cfg["routing"]["rules"][1]["bot"] = {"webhook": "helper"}
    cfg["bots"]["helper"]["secret"] = "not-a-secret"
    assert any("bots.helper.secret" in p and "whsec_" in p for p in _problems(cfg))
    cfg["bots"]["helper"] |= {"secret": BOT_SECRET, "allow_private_networks": False}
    assert any("bots.helper.url" in p for p in _problems(cfg))
    cfg["bots"]["helper"]["allow_private_networks"] = True
    cfg["routing"]["queues"].append({"name": "bot"})
    assert any("routing.queues[2].name" in p and "'bot' is reserved" in p for p in _problems(cfg))
    cfg["routing"]["queues"][2] = {"name": "kb-bot"}  # the knowledge-base bot's
    assert any(
        "routing.queues[2].name" in p and "'kb-bot' is reserved" in p for p in _problems(cfg)
    )


def test_never_held_for_an_automated_sender_or_a_request_for_a_person(tmp_path: Path) -> None:
    cfg = load_config_text(
        config_text(
            bot_config(
                {"path": str(tmp_path / "db")}, "http://127.0.0.1:9/x", "http://127.0.0.1:9/b"
            )
        )
    ).config
    stage = WebhookBotStage(
        lambda: cfg.bots,
        lambda: cfg.routing,
        Texts({}, "en"),
        None,
        None,
        lambda: 0.0,  # type: ignore[arg-type]
    )
    taken = Classification("general", 1, {}, [], "self-service", ["rule matched"], ["self-service"])
    assert stage.hold(taken, "Where is my parcel?", automated=False).queue == BOT_QUEUE
    assert stage.hold(taken, "Where is my parcel?", automated=True) is taken
    assert stage.hold(taken, "Mitarbeiter bitte!", automated=False) is taken
    other = Classification("general", 1, {}, [], "billing", [], ["billing"])
    assert stage.hold(other, "refund please", automated=False) is other


def test_check_warns_about_handoff_rules_that_cannot_decide(tmp_path: Path) -> None:
    from gateway.rulecheck import warnings

    cfg = bot_config({"path": str(tmp_path / "db")}, "http://127.0.0.1:9/x", "http://127.0.0.1:9/b")
    good = load_config_text(config_text(cfg)).config
    assert not [w for w in warnings(good) if "handoff" in w]
    rules = cfg["routing"]["rules"]
    rules[0], rules[1] = rules[1], rules[0]
    below = load_config_text(config_text(cfg)).config
    assert any(
        w.startswith(
            "routing.rules[1] (bot-says-billing): reads handoff facts below rule 'self-service'"
        )
        for w in warnings(below)
    )
    del rules[0]
    no_bot = load_config_text(config_text(cfg)).config
    assert any("no rule hands conversations to a webhook bot" in w for w in warnings(no_bot))


async def test_bots_are_reloaded_live(tmp_path: Path) -> None:
    from gateway.app import Gateway
    from gateway.config import load_config

    cfg = bot_config(
        {"path": str(tmp_path / "db.sqlite")}, "http://127.0.0.1:9/x", "http://127.0.0.1:9/b"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(cfg))
    gw = Gateway(load_config(path))
    await gw.start()
    try:
        cfg["bots"]["helper"]["max_turns"] = 1
        path.write_text(config_text(cfg))
        result = await gw.reload()
        assert result.ok and result.changed == ["bots"]
        assert gw.bot_stage.bots()["helper"].max_turns == 1
    finally:
        await gw.stop()


def test_switchboard_route_explains_a_handoff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from gateway import cli

    cfg = bot_config(
        {"path": str(tmp_path / "db.sqlite")}, "http://127.0.0.1:9/x", "http://127.0.0.1:9/b"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(config_text(cfg))
    args = ["route", "-c", str(path), "--channel", "api", "--text", "hi", "--json"]
    assert cli.main([*args, "--handoff", "reason=billing", "--handoff", "priority=high"]) == 0
    cls = json.loads(capsys.readouterr().out)["classification"]
    assert (cls["queue"], cls["rule"], cls["priority"]) == ("billing", "bot-says-billing", "high")
    assert cli.main(args) == 0  # without: the bot's rule
    assert json.loads(capsys.readouterr().out)["classification"]["rule"] == "self-service"
    assert cli.main([*args, "--handoff", "priority=asap", "--handoff", "reason=x"]) == 1
    assert "priority is one of low, normal, high, urgent" in capsys.readouterr().err


def test_a_turn_waits_only_for_earlier_messages_no_bot_turn_answered() -> None:
    from gateway.bots.stage import unanswered_before
    from gateway.model import Message

    def said(mid: str, at: float, reply_to: str | None = None, action: str = "answer") -> Message:
        if reply_to is None and mid.startswith("in"):
            return Message(mid, "cv", "in", "api", "contact", "c", mid, at, at)
        bot: dict[str, Any] = {"name": "helper", "action": action, "turn": 1}
        if reply_to is not None:
            bot["reply_to"] = reply_to
        return Message(mid, "cv", "out", "api", "bot", "helper", mid, at, at, metadata={"bot": bot})

    one, two, three = said("in1", 1), said("in2", 2), said("in3", 3)
    # The answer to one came after two and three were stored: one is answered, two is not.
    history = [one, two, three, said("out1", 4, "in1")]
    assert [m.id for m in unanswered_before(history, "in3")] == ["in2"]
    assert unanswered_before(history, "in2") == []
    # A handoff notice answers nothing; an answer from before `reply_to` answered all before it.
    notice = said("out2", 5, "in2", action="handoff")
    assert [m.id for m in unanswered_before([one, two, notice, three], "in3")] == ["in1", "in2"]
    legacy = said("old", 2.5, action="ask")
    assert unanswered_before([one, two, legacy, three], "in3") == []
    assert unanswered_before(history, "gone") == []
