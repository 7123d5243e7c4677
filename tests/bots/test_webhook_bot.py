"""The external bot stage end to end on the `api` channel, through a stand-in bot that
checks the signature: it answers and asks back (the conversation stays with it), hands off
with facts the rules use, and the gateway hands off for it on a timeout, a failure, a
keyword, after `max_turns`, and after a restart that cut a call off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.bots import stage
from gateway.bots.stage import BOT_QUEUE
from tests.bots.conftest import StandInBot, bot_config
from tests.gateway.conftest import (  # noqa: F401 - fixtures used by name
    Client,
    Receiver,
    gateway_factory,
    receiver,
    wait_for,
)


async def only_conversation(client: Client, sender: str) -> dict[str, Any]:
    (conv,) = await client.conversations_of(f"api:{sender}")
    return await client.conversation(conv["id"])


def texts_to(rcv: Receiver) -> list[str]:
    return [str(b.get("text")) for b in rcv.bodies()]


async def events_of(gw: Any, prefix: str) -> list[Any]:
    return [e for e in await gw.store.events_since(0, 10_000) if e.type.startswith(prefix)]


async def test_bot_asks_back_then_answers_and_keeps_the_conversation(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [
        {"action": "ask", "text": "What is your order number?"},
        {"action": "answer", "text": "Order 4711 ships tomorrow."},
    ]
    gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url))
    status, _ = await client.inbound("b1", "Where is my parcel?", "ann")
    assert status in (200, 201, 202)
    await wait_for(lambda: "What is your order number?" in texts_to(receiver), timeout=10)
    await client.inbound("b2", "It is 4711", "ann")
    await wait_for(lambda: "Order 4711 ships tomorrow." in texts_to(receiver), timeout=10)

    assert bot.bad_signatures == 0 and len(bot.calls) == 2
    first, second = bot.calls
    assert first["message"]["text"] == "Where is my parcel?"
    assert first["conversation"]["channel"] == "api" and first["contact"]["language"] == "en"
    assert [(t["from"], t["text"]) for t in second["transcript"]] == [
        ("contact", "Where is my parcel?"),
        ("bot", "What is your order number?"),
        ("contact", "It is 4711"),
    ]
    assert first["_webhook_id"] != second["_webhook_id"]

    conv = await only_conversation(client, "ann")
    assert conv["queue"] == BOT_QUEUE and conv["assignee"] is None and conv["status"] == "open"
    assert "bot 'helper' answers first" in conv["routing"]["reasons"]
    bot_messages = [m for m in conv["messages"] if m["sender"]["type"] == "bot"]
    assert [m["automated"] for m in bot_messages] == [True, True]
    assert [e.type for e in await events_of(gw, "bot.")] == ["bot.asked", "bot.answered"]


async def test_handoff_facts_route_to_the_skill_queue_with_the_summary_for_the_agent(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [
        {
            "action": "handoff",
            "reason": "billing",
            "summary": "Kunde hat die Rechnung 2024-17 doppelt bezahlt.",
            "language": "de",
            "skills": ["billing"],
            "priority": "high",
        }
    ]
    gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url))
    await client.inbound("h1", "Ich habe meine Rechnung doppelt bezahlt", "bea")
    conv = await wait_for(lambda: _assigned(client, "bea"), timeout=10)
    # Alice: billing skill 8, online; Carol (billing 5) is offline.
    assert conv["queue"] == "billing" and conv["assignee"] == "alice"
    assert conv["priority"] == "high" and conv["required_skills"] == {"billing": 5}
    assert conv["tags"] == ["from-bot"]
    reasons = conv["routing"]["reasons"]
    assert any("rule 'bot-says-billing' matched: handoff reason is 'billing'" in r for r in reasons)
    assert conv["routing"]["handoff"]["summary"].startswith("Kunde hat")
    note = next(m for m in conv["messages"] if m["private"])
    assert "Kunde hat die Rechnung 2024-17 doppelt bezahlt." in note["text"]
    await wait_for(lambda: receiver.bodies(), timeout=10)
    assert texts_to(receiver) == [
        "Wir verbinden Sie mit einem Menschen: Jemand aus unserem Team antwortet Ihnen hier."
    ]
    (handoff,) = await events_of(gw, "bot.handoff")
    assert handoff.data["reason"] == "billing" and handoff.data["queue"] == "billing"
    # The assignment's reason says what the bot handed off with.
    (assigned,) = await events_of(gw, "conversation.assigned")
    assert any(r.startswith("bot handed off: reason 'billing'") for r in assigned.data["reasons"])

    # The explanation shows the same decision for the same facts.
    status, out = await client.call(
        "POST",
        "/v1/routing/explain",
        json={
            "channel": "api",
            "text": "Rechnung",
            "handoff": {"reason": "billing", "skills": ["billing"], "priority": "high"},
        },
    )
    assert status == 200, out
    cls = out["classification"]
    assert cls["queue"] == "billing" and cls["priority"] == "high"
    assert cls["rule"] == "bot-says-billing"
    assert cls["reasons"][0].startswith("bot handed off: reason 'billing'")
    status, out = await client.call(
        "POST",
        "/v1/routing/explain",
        json={"channel": "api", "text": "x", "handoff": {"reason": "billing", "priority": "asap"}},
    )
    assert status == 422 and out["error"]["code"] == "validation_error", out


async def _assigned(client: Client, sender: str) -> dict[str, Any] | None:
    convs = await client.conversations_of(f"api:{sender}")
    if not convs:
        return None
    conv = await client.conversation(convs[0]["id"])
    return conv if conv["assignee"] else None


async def test_a_bot_that_times_out_hands_off_at_once(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [("sleep", 5, {"action": "answer", "text": "too late"})]
    cfg = bot_config(store_config, receiver.url, bot.url, timeout=0.3)
    _gw, client = await gateway_factory(cfg)
    await client.inbound("t1", "Hello, I need help with my account", "cid")
    conv = await wait_for(lambda: _assigned(client, "cid"), timeout=10)
    assert conv["queue"] == "general" and conv["routing"]["handoff"]["reason"] == "timeout"
    await wait_for(lambda: receiver.bodies(), timeout=10)
    assert texts_to(receiver) == [
        "Connecting you to a person: someone from our team will answer you here."
    ]
    _, metrics = await client.call("GET", "/metrics", token=None)
    assert 'switchboard_bot_turns_total{bot="helper",outcome="timeout"}' in metrics


async def test_a_failing_or_garbled_bot_hands_off(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [500, b'{"action": "dance"}']
    _gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url))
    await client.inbound("f1", "Hello there", "dan")
    conv = await wait_for(lambda: _assigned(client, "dan"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "bot_failed"
    await client.inbound("f2", "Hello there", "eve")
    conv = await wait_for(lambda: _assigned(client, "eve"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "bot_failed"
    assert len(bot.calls) == 2


async def test_keyword_and_max_turns_reach_a_person(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    cfg = bot_config(store_config, receiver.url, bot.url, max_turns=2)
    _gw, client = await gateway_factory(cfg)
    # The keyword: the bot answered once, "Mensch" goes to a person without asking it.
    await client.inbound("k1", "Guten Tag, ich habe eine Frage", "fay")
    await wait_for(lambda: len(bot.calls) == 1, timeout=10)
    await wait_for(lambda: receiver.bodies(), timeout=10)
    await client.inbound("k2", "Mensch bitte", "fay")
    conv = await wait_for(lambda: _assigned(client, "fay"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "keyword" and len(bot.calls) == 1
    await wait_for(lambda: len(receiver.bodies()) == 2, timeout=10)
    assert texts_to(receiver)[-1].startswith("Wir verbinden Sie mit einem Menschen")

    # Two bot turns, then the third message goes to a person.
    for i in range(3):
        await client.inbound(f"m{i}", f"question number {i} about the product", "gus")
        if i < 2:
            await wait_for(lambda n=i: len(bot.calls) == 2 + n, timeout=10)
    conv = await wait_for(lambda: _assigned(client, "gus"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "max_turns" and len(bot.calls) == 3


async def test_a_first_message_asking_for_a_person_skips_the_bot(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    _gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url))
    await client.inbound("p1", "agent", "hal")
    conv = await wait_for(lambda: _assigned(client, "hal"), timeout=10)
    assert conv["queue"] == "general" and not bot.calls


async def test_a_call_cut_off_by_a_restart_is_handed_off_at_start(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [("sleep", 30, {"action": "answer", "text": "never"})]
    cfg = bot_config(store_config, receiver.url, bot.url, timeout=3)
    gw, client = await gateway_factory(cfg)
    # A conversation waits for its customer after a bot answer: it stays with the bot.
    bot.replies.insert(0, {"action": "answer", "text": "Yes, we open at nine."})
    await client.inbound("r2", "Are you open on Saturday?", "joe")
    await wait_for(lambda: "Yes, we open at nine." in texts_to(receiver), timeout=10)
    # Another one's call is under way when the gateway stops.
    await client.inbound("r1", "Hello, is anyone there?", "ida")
    await wait_for(lambda: len(bot.calls) == 2, timeout=10)
    await gw.stop()  # well within the bot's timeout: the call is cut, not timed out

    _, client = await gateway_factory(cfg)
    conv = await wait_for(lambda: _assigned(client, "ida"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "restart"
    waiting = await only_conversation(client, "joe")
    assert waiting["queue"] == BOT_QUEUE and waiting["assignee"] is None
    assert len(bot.calls) == 2  # nothing was sent to the bot again


async def test_a_bot_that_resolves_counts_as_self_service_and_the_customer_can_go_on(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    bot.replies = [
        {"action": "answer", "text": "We open at nine.", "resolve": True},
        {"action": "answer", "text": "Yes, on Saturdays too."},
    ]
    _gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url))
    await client.inbound("s1", "When do you open?", "kim")

    async def resolved() -> dict[str, Any] | None:
        c = await only_conversation(client, "kim")
        return c if c["status"] == "resolved" else None

    conv = await wait_for(resolved, timeout=10)
    assert conv["queue"] == BOT_QUEUE and conv["assignee"] is None
    status, stats = await client.call("GET", "/v1/stats")
    assert status == 200, stats
    served = stats["totals"]["self_service"]
    assert (served["resolved"], served["without_agent"], served["rate"]) == (1, 1, 1.0)
    _, metrics = await client.call("GET", "/metrics", token=None)
    assert 'switchboard_self_service_total{outcome="resolved_by_bot"}' in metrics

    # The customer writes again: the same conversation, still with the bot.
    await client.inbound("s2", "On Saturdays too?", "kim")
    await wait_for(lambda: "Yes, on Saturdays too." in texts_to(receiver), timeout=10)
    conv = await only_conversation(client, "kim")
    assert conv["status"] == "open" and conv["queue"] == BOT_QUEUE and len(bot.calls) == 2


async def test_a_conversation_with_the_bot_gets_no_wait_notice_and_one_turn_holds(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    cfg = bot_config(store_config, receiver.url, bot.url, max_turns=1)
    cfg["notices"] = {"wait_after": "1h", "wait_channel_kinds": ["api"]}
    bot.replies = [{"action": "ask", "text": "Which product?"}]
    gw, client = await gateway_factory(cfg)
    await client.inbound("w1", "My device is broken", "lou")
    await wait_for(lambda: "Which product?" in texts_to(receiver), timeout=10)
    # Hours later: no long-wait message for a customer talking to the bot.
    assert await gw.notices.send_wait_notices(gw.clock() + 7200) == 0
    assert await gw.notices.wait_candidates() == []
    # The one bot turn is used up: the next message goes to a person.
    await client.inbound("w2", "The blue one", "lou")
    conv = await wait_for(lambda: _assigned(client, "lou"), timeout=10)
    assert conv["routing"]["handoff"]["reason"] == "max_turns"


async def test_a_late_answer_after_a_person_took_over_is_dropped(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    release = asyncio.Event()
    bot.replies = [("wait", release, {"action": "answer", "text": "Too late"})]
    gw, client = await gateway_factory(bot_config(store_config, receiver.url, bot.url, timeout=10))
    await client.inbound("l1", "Can someone call me back?", "max")
    await wait_for(lambda: len(bot.calls) == 1, timeout=10)
    (conv,) = await client.conversations_of("api:max")
    status, body = await client.call(
        "POST", f"/v1/conversations/{conv['id']}/transfer", json={"agent": "bob"}
    )
    assert status == 200, body
    release.set()
    await gw.bot_stage.idle()
    conv = await only_conversation(client, "max")
    assert conv["assignee"] == "bob"
    assert texts_to(receiver) == [] and await events_of(gw, "bot.") == []


async def test_a_handoff_to_a_closed_queue_says_when_a_person_will_be_there(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    monday_7 = dt.datetime(2026, 3, 23, 7, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    cfg = bot_config(store_config, receiver.url, bot.url)
    cfg["routing"]["hours"] = {
        "office": {
            "timezone": "Europe/Berlin",
            "weekly": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        }
    }
    cfg["routing"]["queues"][1]["hours"] = "office"  # billing
    bot.replies = [{"action": "handoff", "reason": "billing", "summary": "Refund"}]
    _, client = await gateway_factory(cfg, clock=lambda: monday_7)
    await client.inbound("c1", "I want my money back", "ned")

    async def told() -> list[str]:
        return texts_to(receiver)

    assert await wait_for(told, timeout=10) == [
        "Thank you for your message. We are closed right now and back at 08:00; we will "
        "answer you then."
    ]
    conv = await only_conversation(client, "ned")
    assert conv["queue"] == "billing" and conv["assignee"] is None
    assert any("closed" in r for r in conv["routing"]["reasons"])


async def test_a_customer_who_goes_quiet_is_resolved_after_idle_after(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    now = [1_790_000_000.0]
    cfg = bot_config(store_config, receiver.url, bot.url, idle_after="2h")
    cfg["timers"] = {"max_sleep": 0.05}
    bot.replies = [{"action": "ask", "text": "Which size?"}]
    _, client = await gateway_factory(cfg, clock=lambda: now[0])
    await client.inbound("q1", "Do you have the shoes in blue?", "oli")
    await wait_for(lambda: "Which size?" in texts_to(receiver), timeout=10)
    now[0] += 3600  # an hour: still with the bot
    conv = await only_conversation(client, "oli")
    assert conv["status"] == "open"

    now[0] += 3601  # past two hours since the customer wrote

    async def resolved() -> dict[str, Any] | None:
        c = await only_conversation(client, "oli")
        return c if c["status"] == "resolved" else None

    conv = await wait_for(resolved, timeout=10)
    assert conv["queue"] == BOT_QUEUE and conv["assignee"] is None
    status, stats = await client.call("GET", "/v1/stats")
    assert status == 200 and stats["totals"]["self_service"]["without_agent"] == 0


async def test_a_handoff_without_a_language_carries_the_detected_one(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    store_config: dict[str, Any],
) -> None:
    cfg = bot_config(store_config, receiver.url, bot.url)
    cfg["routing"]["rules"].insert(
        0,
        {"name": "german", "when": {"handoff": {"language": "de"}}, "then": {"queue": "billing"}},
    )
    bot.replies = [{"action": "handoff", "reason": "other"}]
    _, client = await gateway_factory(cfg)
    await client.inbound("g1", "Ich habe eine Frage zu meiner Bestellung", "pia")
    conv = await wait_for(lambda: _assigned(client, "pia"), timeout=10)
    assert conv["routing"]["handoff"]["language"] == "de"
    assert conv["queue"] == "billing" and conv["routing"]["rule"] == "german"


async def test_two_instances_take_one_conversations_turns_one_at_a_time_in_order(
    gateway_factory: Any,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    bot: StandInBot,
    pg_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A customer's quick messages land on two instances of one PostgreSQL: the bot is
    called for one message at a time, in the order they came, and its answers go out in
    that order (the turn is claimed in the store, not only in each process; the claim is
    shorter here than the bot's first call: renewed while the call runs, it holds)."""
    monkeypatch.setattr(stage, "TURN_TTL", 0.6)
    bot.replies = [
        ("sleep", 3.0, {"action": "answer", "text": "Answer one"}),
        {"action": "answer", "text": "Answer two"},
        {"action": "answer", "text": "Answer three"},
    ]
    cfg = bot_config({"backend": "postgres", "dsn": pg_dsn}, receiver.url, bot.url, timeout=10)
    gw_a, a = await gateway_factory(cfg)
    gw_b, b = await gateway_factory(cfg)
    await a.inbound("q1", "My order did not arrive", "dan")
    await wait_for(lambda: len(bot.calls) == 1, timeout=10)  # a's call is under way
    # Past the claim's 0.6 s: a renews it while the call runs, so nobody else gets it.
    await asyncio.sleep(1.5)
    (conv,) = await a.conversations_of("api:dan")
    assert not await gw_b.store.bot_turn_claim(conv["id"], "intruder", 60)
    await b.inbound("q2", "It was order 4711", "dan")
    await a.inbound("q3", "I paid by card", "dan")
    await wait_for(lambda: len(texts_to(receiver)) == 3, timeout=15)
    await gw_a.bot_stage.idle()
    await gw_b.bot_stage.idle()

    assert bot.most_at_once == 1
    assert [c["message"]["text"] for c in bot.calls] == [
        "My order did not arrive",
        "It was order 4711",
        "I paid by card",
    ]
    assert texts_to(receiver) == ["Answer one", "Answer two", "Answer three"]
    conv = await only_conversation(a, "dan")
    assert conv["queue"] == BOT_QUEUE and conv["assignee"] is None
