"""Surveys by SMS through the whole gateway and the Twilio stand-in: asked after the
resolution's delay, answered by a number (with a comment), which neither reopens nor
routes anything; a redelivered answer counts once; the per-contact cap; "stop"; opting
back in through the API; anything else reopens the conversation as usual."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.gateway.conftest import Client, gateway_factory
from tests.standins.twilio import CUSTOMER_NUMBER, TwilioStandin
from tests.surveys.conftest import OnBackend
from tests.surveys.helpers import Clock, decided, event_types, fire, resolve, surveys, until
from tests.twilio.test_twilio_gateway import (
    SMS_INBOUND,
    post_sms,
    routed_conversation,
    twilio_config,
)

__all__ = ["gateway_factory"]

HOUR = 3600.0


def sms_config(tmp_path: Path, twilio: TwilioStandin, **surveys_cfg: Any) -> dict[str, Any]:
    cfg, _ = twilio_config(tmp_path, twilio)
    cfg["surveys"] = {"delay": "1h", "csat": {"enabled": True}, **surveys_cfg}
    return cfg


def survey_texts(twilio: TwilioStandin) -> list[str]:
    return [
        m["_request"]["Body"]
        for m in twilio.messages
        if "How satisfied" in m["_request"].get("Body", "")
    ]


def bodies(twilio: TwilioStandin) -> list[str]:
    return [m["_request"].get("Body", "") for m in twilio.messages]


async def test_csat_by_sms_answered_with_a_number_and_a_comment(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, on_backend: OnBackend
) -> None:
    clock = Clock()
    gw, client = await gateway_factory(on_backend(sms_config(tmp_path, twilio)), clock=clock)
    await post_sms(client, twilio, "My parcel is late")
    conv = await routed_conversation(client)
    await resolve(client, conv["id"])

    # Not before the delay.
    await fire(gw, clock, 0.5 * HOUR)
    await asyncio.sleep(0.3)
    assert survey_texts(twilio) == []
    assert await surveys(client) == []

    await fire(gw, clock, 0.6 * HOUR)
    [question] = await until(lambda: survey_texts(twilio))
    assert question.splitlines() == [
        "How satisfied are you with the help you received?",
        "1 = very dissatisfied, 5 = very satisfied",
        "Reply with a number from 1 to 5; you may add a comment after it.",
        "Reply STOP to receive no more surveys.",
    ]
    assert twilio.messages[-1]["_request"]["To"] == CUSTOMER_NUMBER
    [sent] = await surveys(client)
    assert (sent["kind"], sent["score"], sent["channel"]) == ("csat", None, "sms")
    assert sent["conversation_id"] == conv["id"] and sent["agent_id"] == conv["assignee"]

    # The answer: recorded, the conversation stays resolved, nothing new to route.
    _, _, _, params = await post_sms(client, twilio, "4 - quick and friendly")
    [answered] = await until(lambda: _answered(client))
    assert (answered["score"], answered["comment"]) == (4, "quick and friendly")
    after = await client.conversation(conv["id"])
    assert after["status"] == "resolved"
    assert [m["text"] for m in after["messages"] if m["direction"] == "in"] == ["My parcel is late"]
    _, page = await client.call("GET", "/v1/conversations")
    assert [c["id"] for c in page["conversations"]] == [conv["id"]]
    await until(lambda: "Thank you for your feedback!" in bodies(twilio))

    # Twilio delivers the same answer again: it counts once, no second thank-you.
    status, _, _ = await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params)
    assert status == 200
    await asyncio.sleep(0.3)
    assert bodies(twilio).count("Thank you for your feedback!") == 1
    assert (await client.conversation(conv["id"]))["status"] == "resolved"
    types = await event_types(gw)
    assert types.count("survey.sent") == 1 and types.count("survey.answered") == 1
    assert "conversation.reopened" not in types

    # The cap: one survey per contact per 7 days. A new question reopens the conversation
    # as usual; resolved again, it is not asked about.
    await post_sms(client, twilio, "Now the invoice is wrong")
    reopened = await until(lambda: _status(client, conv["id"], "open", "assigned"))
    assert reopened
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: _decisions(gw, conv["id"], 2))
    assert await decided(gw, conv["id"]) == ["sent", "contact_cap"]
    assert len(survey_texts(twilio)) == 1

    # A week later the cap has room again (and the message opens a new conversation).
    await fire(gw, clock, 7 * 24 * HOUR)
    await post_sms(client, twilio, "One more thing")
    convs = await until(lambda: _others(client, conv["id"]))
    await resolve(client, convs[0]["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: len(survey_texts(twilio)) == 2)


async def test_stop_opts_out_and_the_api_opts_back_in(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, on_backend: OnBackend
) -> None:
    clock = Clock()
    cfg = on_backend(sms_config(tmp_path, twilio, max_per_contact=10))
    gw, client = await gateway_factory(cfg, clock=clock)
    await post_sms(client, twilio, "Where is my order?")
    conv = await routed_conversation(client)
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: survey_texts(twilio))

    await post_sms(client, twilio, "STOP")
    await until(lambda: "Done: you will receive no more surveys from us." in bodies(twilio))
    contact_id = conv["contact_id"]
    status, state = await client.call("GET", f"/v1/contacts/{contact_id}/surveys")
    assert status == 200 and state["opted_out"] is True
    assert (await client.conversation(conv["id"]))["status"] == "resolved"
    assert "contact.survey_optout" in await event_types(gw)

    # Reopened by a real question, resolved again: not asked (opted out).
    await post_sms(client, twilio, "my printer broke again")
    await until(lambda: _status(client, conv["id"], "open", "assigned"))
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: _decisions(gw, conv["id"], 2))
    assert await decided(gw, conv["id"]) == ["sent", "opted_out"]
    assert len(survey_texts(twilio)) == 1

    # An admin opts the customer back in; the next resolution is asked about.
    status, state = await client.call(
        "PUT", f"/v1/contacts/{contact_id}/surveys", json={"opted_out": False}
    )
    assert status == 200 and state["opted_out"] is False
    await post_sms(client, twilio, "and the screen flickers")
    await until(lambda: _status(client, conv["id"], "open", "assigned"))
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: len(survey_texts(twilio)) == 2)
    # Not a number on the scale: an ordinary message, which reopens as usual.
    await post_sms(client, twilio, "9")
    await until(lambda: _status(client, conv["id"], "open", "assigned"))
    assert all(s["score"] is None for s in await surveys(client))


async def _answered(client: Client) -> list[dict[str, Any]]:
    return [s for s in await surveys(client) if s["score"] is not None]


async def _others(client: Client, conv_id: str) -> list[dict[str, Any]]:
    return [
        c for c in await client.conversations_of(f"phone:{CUSTOMER_NUMBER}") if c["id"] != conv_id
    ]


async def _status(client: Client, conv_id: str, *statuses: str) -> bool:
    return (await client.conversation(conv_id))["status"] in statuses


async def _decisions(gw: Any, conv_id: str, n: int) -> bool:
    return len(await decided(gw, conv_id)) >= n


async def test_a_comment_follows_within_the_window_only(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    clock = Clock()
    gw, client = await gateway_factory(
        sms_config(tmp_path, twilio, comment_window="10m", max_per_contact=5), clock=clock
    )
    await post_sms(client, twilio, "The app logs me out")
    conv = await routed_conversation(client)
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: survey_texts(twilio))
    await post_sms(client, twilio, "3")
    invite = "Thank you for your feedback! Anything to add? Just reply with a comment."
    await until(lambda: invite in bodies(twilio))
    # Eleven minutes later: not a comment any more, but a message that reopens.
    clock.advance(11 * 60)
    await post_sms(client, twilio, "It happened again")
    await until(lambda: _status(client, conv["id"], "open", "assigned"))
    [survey] = await surveys(client)
    assert (survey["score"], survey["comment"]) == (3, None)

    # The next survey, answered with a number; the comment follows in time.
    await resolve(client, conv["id"])
    await fire(gw, clock, 2 * HOUR)
    await until(lambda: len(survey_texts(twilio)) == 2)
    await post_sms(client, twilio, "5")
    await until(lambda: bodies(twilio).count(invite) == 2)
    clock.advance(5 * 60)
    await post_sms(client, twilio, "Fixed for good, thanks")
    await until(lambda: "Thank you, your comment was saved." in bodies(twilio))
    latest = (await surveys(client))[0]
    assert (latest["score"], latest["comment"]) == (5, "Fixed for good, thanks")
    assert (await client.conversation(conv["id"]))["status"] == "resolved"
