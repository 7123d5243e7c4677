"""A polled Telegram update with a NUL (U+0000) in its text and the sender's name is stored
without it, on both stores, and the update after it flows: the offset moves on (on
PostgreSQL the NUL was refused and the same update fetched again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import gateway_factory, wait_for
from tests.standins.telegram import TelegramStandin
from tests.telegram.test_telegram_gateway import USER_ID, telegram_config

__all__ = ["gateway_factory"]


async def two_messages(client: Any) -> list[dict[str, Any]] | None:
    convs = await client.conversations_of(f"telegram:{USER_ID}")
    if not convs:
        return None
    messages = (await client.conversation(convs[0]["id"]))["messages"]
    return list(messages) if len(messages) == 2 else None


async def test_an_update_with_a_nul_is_stored_without_it_and_the_next_flows(
    gateway_factory: Any, tmp_path: Path, telegram: TelegramStandin, store_block: dict[str, Any]
) -> None:
    cfg = telegram_config(tmp_path, telegram)
    cfg["store"] = store_block
    _, client = await gateway_factory(cfg)
    await telegram.wait_request("getUpdates")
    user = telegram.user(USER_ID, first_name="A\x00na")
    telegram.push_message(user, "my order\x00 is late")
    telegram.push_message(user, "hello?")
    messages = await wait_for(lambda: two_messages(client))
    assert [m["text"] for m in messages] == ["my order is late", "hello?"]
    convs = await client.conversations_of(f"telegram:{USER_ID}")
    status, contact = await client.call("GET", f"/v1/contacts/{convs[0]['contact_id']}")
    assert status == 200 and contact["name"] == "Ana García", contact
