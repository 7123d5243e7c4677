"""A Telegram update the connector cannot read is kept in quarantine and the bot moves on:
it never blocks the updates behind it by being fetched again for ever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.telegram.connector import TelegramConnector
from tests.gateway.conftest import gateway_factory, wait_for
from tests.standins.telegram import TelegramStandin
from tests.telegram.test_telegram_gateway import USER_ID, polling_gateway

__all__ = ["gateway_factory"]


async def test_unreadable_update_is_quarantined_and_polling_goes_on(
    gateway_factory: Any,
    tmp_path: Path,
    telegram: TelegramStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = TelegramConnector._normalise

    async def choking(self: TelegramConnector, update: Any) -> Any:
        if update.message and update.message.text == "poison":
            raise AttributeError("'NoneType' object has no attribute 'file_id'")
        return await real(self, update)

    monkeypatch.setattr(TelegramConnector, "_normalise", choking)
    client = await polling_gateway(gateway_factory, tmp_path, telegram)
    poison = telegram.push_message(telegram.user(USER_ID), "poison")
    telegram.push_message(telegram.user(USER_ID), "the next question")

    convs = await wait_for(lambda: client.conversations_of(f"telegram:{USER_ID}"), timeout=10)
    texts = [m["text"] for m in (await client.conversation(convs[0]["id"]))["messages"]]
    assert texts == ["the next question"]
    _, page = await client.call("GET", "/v1/quarantine?channel=tg")
    [item] = page["items"]
    assert item["external_id"] == str(poison["update_id"])
    assert item["reason"].startswith("unreadable update: AttributeError")

    monkeypatch.setattr(TelegramConnector, "_normalise", real)
    status, retried = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 200 and retried["status"] == "retried"
    texts = [m["text"] for m in (await client.conversation(convs[0]["id"]))["messages"]]
    assert sorted(texts) == ["poison", "the next question"]
