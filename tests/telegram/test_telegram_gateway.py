"""Telegram through the whole running gateway: updates polled from the Bot API stand-in,
routed, agent replies sent with sendMessage (flood control, blocked users), and webhook
mode's secret token check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.gateway.conftest import Client, agent_token, base_config, gateway_factory, wait_for
from tests.standins.telegram import WEBHOOK_SECRET, TelegramStandin

__all__ = ["gateway_factory"]

USER_ID = 5550001
HOOK_PATH = "/channels/tg/telegram/webhook"


def telegram_config(tmp_path: Path, telegram: TelegramStandin, **channel: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["channels"].append(
        {
            "name": "tg",
            "type": "telegram",
            "token": telegram.token,
            "api_base_url": telegram.url,
            "poll_timeout": 1,
            "request_timeout": 3,
            **channel,
        }
    )
    return cfg


async def polling_gateway(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin
) -> Client:
    client: Client
    _, client = await gateway_factory(telegram_config(tmp_path, telegram))
    await telegram.wait_request("getUpdates")  # the channel is up and polling
    return client


async def routed_conversation(client: Client, user_id: int = USER_ID) -> dict[str, Any]:
    convs = await wait_for(lambda: client.conversations_of(f"telegram:{user_id}"))
    assert len(convs) == 1
    return dict(await wait_for(lambda: client.assigned(convs[0]["id"])))


async def reply(client: Client, conv: dict[str, Any], text: str) -> dict[str, Any]:
    status, msg = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": text},
    )
    assert status == 202, msg
    return dict(msg)


async def status_is(
    client: Client, conv_id: str, msg_id: str, *statuses: str
) -> dict[str, Any] | None:
    conv = await client.conversation(conv_id)
    msg = next(m for m in conv["messages"] if m["id"] == msg_id)
    return msg if msg["status"] in statuses else None


async def test_polled_message_routed_and_reply_sent(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin
) -> None:
    client = await polling_gateway(gateway_factory, tmp_path, telegram)
    update = telegram.push_message(telegram.user(USER_ID), "Hola, I need a refund for my order")
    conv = await routed_conversation(client)
    assert conv["channel"] == "tg" and conv["channel_kind"] == "telegram"
    assert conv["queue"] == "billing" and conv["assignee"] == "alice"
    [inbound] = (await client.conversation(conv["id"]))["messages"]
    assert inbound["text"] == "Hola, I need a refund for my order"
    assert inbound["external_id"] == f"{USER_ID}:{update['message']['message_id']}"
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200 and contact["name"] == "Ana García"

    out = await reply(client, conv, "¡Claro! Your refund is on its way.")
    sent = await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"))
    [delivered] = telegram.sent
    assert delivered["_params"]["chat_id"] == USER_ID
    assert delivered["text"] == "¡Claro! Your refund is on its way."
    assert sent["provider_message_id"] == f"{USER_ID}:{delivered['message_id']}"


async def test_flood_control_then_delivered_once(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin
) -> None:
    client = await polling_gateway(gateway_factory, tmp_path, telegram)
    telegram.push_message(telegram.user(USER_ID), "hello?")
    conv = await routed_conversation(client)
    telegram.fail_next("sendMessage", 429, retry_after=1)
    out = await reply(client, conv, "Hi Ana, how can we help?")
    await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"), timeout=10)
    calls = telegram.requests_for("sendMessage")
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 0.9  # retry_after honoured
    [delivered] = telegram.sent
    assert delivered["_params"]["chat_id"] == USER_ID
    assert delivered["text"] == "Hi Ana, how can we help?"


async def test_blocked_by_user_fails_with_a_reason(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin
) -> None:
    client = await polling_gateway(gateway_factory, tmp_path, telegram)
    telegram.push_message(telegram.user(USER_ID), "never mind")
    conv = await routed_conversation(client)
    telegram.block(USER_ID)
    out = await reply(client, conv, "Are you still there?")
    failed = await wait_for(lambda: status_is(client, conv["id"], out["id"], "failed"))
    assert "blocked" in failed["reason"]
    assert telegram.sent == []
    assert len(telegram.requests_for("sendMessage")) == 1  # a block is not retried


async def test_webhook_secret_is_required(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin
) -> None:
    cfg = telegram_config(
        tmp_path,
        telegram,
        mode="webhook",
        webhook_secret=WEBHOOK_SECRET,
        webhook_base_url="https://support.example.com",
    )
    _, client = await gateway_factory(cfg)
    await wait_for(lambda: telegram.webhook)
    assert telegram.webhook is not None
    assert telegram.webhook["url"] == "https://support.example.com" + HOOK_PATH
    assert telegram.webhook["secret_token"] == WEBHOOK_SECRET

    update = telegram.push_message(telegram.user(USER_ID), "Is anyone there?")
    url = client.base + HOOK_PATH
    body = json.dumps(update)
    for headers in (
        {},
        {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret"},
        {"X-Telegram-Bot-Api-Secret-Token": ""},
    ):
        async with client.http.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}
        ) as resp:
            assert resp.status == 403
    assert await client.conversations_of(f"telegram:{USER_ID}") == []
    status, page = await client.call("GET", "/v1/conversations")
    assert status == 200 and page["conversations"] == []

    # Telegram delivers it (and again: stored once).
    assert await telegram.deliver_webhook(client.http, url) == [200]
    async with client.http.post(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET,
        },
    ) as resp:
        assert resp.status == 200
    conv = await routed_conversation(client)
    messages = (await client.conversation(conv["id"]))["messages"]
    assert [m["text"] for m in messages] == ["Is anyone there?"]
