"""Surveys on Telegram through the gateway and the Bot API stand-in: the question in the
customer's language (`language_code`) with an inline keyboard; a button press comes back as
a callback query and is the answer; a typed number answers too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import gateway_factory
from tests.standins.telegram import TelegramStandin
from tests.surveys.conftest import OnBackend
from tests.surveys.helpers import Clock, event_types, fire, resolve, surveys, until
from tests.telegram.test_telegram_gateway import USER_ID, routed_conversation, telegram_config

__all__ = ["gateway_factory"]

HOUR = 3600.0


def questions(telegram: TelegramStandin) -> list[dict[str, Any]]:
    return [m for m in telegram.sent if m["_params"].get("reply_markup")]


async def test_nps_in_german_answered_with_the_inline_keyboard(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin, on_backend: OnBackend
) -> None:
    clock = Clock()
    cfg = on_backend(telegram_config(tmp_path, telegram))
    cfg["surveys"] = {"delay": "30m", "nps": {"enabled": True}, "csat": {"enabled": True}}
    gw, client = await gateway_factory(cfg, clock=clock)
    await telegram.wait_request("getUpdates")
    user = telegram.user(USER_ID, first_name="Jonas", last_name="Weber", language_code="de")
    telegram.push_message(user, "Meine Rechnung stimmt nicht")
    conv = await routed_conversation(client)
    await resolve(client, conv["id"])
    await fire(gw, clock, HOUR)

    [question] = await until(lambda: questions(telegram))
    assert question["_params"]["chat_id"] == USER_ID
    assert question["text"].splitlines()[0] == (
        "Wie wahrscheinlich ist es, dass Sie uns einem Freund oder Kollegen empfehlen?"
    )
    keyboard = question["_params"]["reply_markup"]["inline_keyboard"]
    labels = [b["text"] for row in keyboard for b in row]
    assert labels == [str(n) for n in range(0, 11)]
    assert [len(row) for row in keyboard] == [6, 5]
    nine = next(b for row in keyboard for b in row if b["text"] == "9")

    # The customer presses 9: a callback query, acknowledged to Telegram.
    telegram.push_callback(user, question, nine["callback_data"])
    [answered] = await until(lambda: _answered(client))
    assert (answered["kind"], answered["score"], answered["language"]) == ("nps", 9, "de")
    await until(lambda: telegram.answered_callbacks)
    assert (await client.conversation(conv["id"]))["status"] == "resolved"
    assert (await event_types(gw)).count("survey.answered") == 1

    # Thanks in words, with an invitation to comment: the next message is the comment.
    invite = "Vielen Dank für Ihre Rückmeldung! Möchten Sie noch etwas ergänzen?"
    await until(lambda: any(m["text"].startswith(invite) for m in telegram.sent))
    telegram.push_message(user, "Sehr schnell, danke")
    await until(lambda: _commented(client))
    await until(
        lambda: any(m["text"] == "Danke, Ihr Kommentar wurde gespeichert." for m in telegram.sent)
    )
    assert (await client.conversation(conv["id"]))["status"] == "resolved"
    # After that, a message is a message again: it reopens the conversation.
    telegram.push_message(user, "Noch eine Frage zur Rechnung")
    await until(lambda: _reopened(client, conv["id"]))
    [survey] = await surveys(client)
    assert (survey["score"], survey["comment"]) == (9, "Sehr schnell, danke")

    # A forged button for someone else's survey changes nothing.
    other = telegram.user(USER_ID + 1, first_name="Eve", language_code="en")
    telegram.push_callback(other, question, nine["callback_data"].rsplit(":", 1)[0] + ":0")
    await until(lambda: len(telegram.answered_callbacks) == 2)
    [still] = await surveys(client)
    assert still["score"] == 9


async def test_a_typed_number_answers_the_csat_question(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin, on_backend: OnBackend
) -> None:
    clock = Clock()
    cfg = on_backend(telegram_config(tmp_path, telegram))
    cfg["surveys"] = {"delay": "30m"}
    gw, client = await gateway_factory(cfg, clock=clock)
    await telegram.wait_request("getUpdates")
    user = telegram.user(USER_ID, language_code="en")
    telegram.push_message(user, "The app crashes on start")
    conv = await routed_conversation(client)
    await resolve(client, conv["id"])
    await fire(gw, clock, HOUR)
    [question] = await until(lambda: questions(telegram))
    assert question["text"].startswith("How satisfied are you")

    telegram.push_message(user, "5 fixed in minutes")
    [answered] = await until(lambda: _answered(client))
    assert (answered["score"], answered["comment"]) == (5, "fixed in minutes")
    await until(lambda: any(m["text"] == "Thank you for your feedback!" for m in telegram.sent))
    assert (await client.conversation(conv["id"]))["status"] == "resolved"


async def _answered(client: Any) -> list[dict[str, Any]]:
    return [s for s in await surveys(client) if s["score"] is not None]


async def _commented(client: Any) -> list[dict[str, Any]]:
    return [s for s in await surveys(client) if s["comment"]]


async def _reopened(client: Any, conv_id: str) -> bool:
    return (await client.conversation(conv_id))["status"] in ("open", "assigned")
