"""Telegram outbound: sendMessage results, flood control and the limiter."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from connectors.base import Identity, OutboundMessage
from connectors.telegram import FloodLimiter, TelegramSettings, TokenBucket, split_text
from tests.standins.context import ChannelFactory as BotFactory
from tests.standins.telegram import TelegramStandin

USER = 5550001


def out(text: str = "We found your parcel.", to: int = USER, **metadata: object) -> OutboundMessage:
    return OutboundMessage(
        id="o1",
        conversation_id="c1",
        to=Identity("telegram", str(to)),
        text=text,
        metadata=dict(metadata),
    )


async def test_send_message_to_the_users_chat(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot()
    result = await connector.send(out())
    [sent] = telegram.sent
    assert result.status == "sent"
    assert result.provider_message_id == f"{USER}:{sent['message_id']}"
    assert sent["chat"]["id"] == USER and sent["text"] == "We found your parcel."


async def test_flood_control_429_is_a_retry_with_telegrams_delay(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot()
    telegram.fail_next("sendMessage", 429, retry_after=17)
    result = await connector.send(out())
    assert (result.status, result.retry_after) == ("retry", 17.0)
    assert "Flood" in (result.reason or "") or "retry" in (result.reason or "").lower()
    assert telegram.sent == []


async def test_blocked_by_the_user_fails_with_that_reason(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot()
    telegram.block(USER)
    result = await connector.send(out())
    assert result.status == "failed"
    assert result.reason == "telegram: Forbidden: bot was blocked by the user"


async def test_bad_request_fails_and_server_errors_or_outage_retry(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot()
    telegram.fail_next("sendMessage", 400, "Bad Request: chat not found")
    bad = await connector.send(out(to=42))
    assert (bad.status, bad.reason) == ("failed", "telegram: Chat not found")
    telegram.fail_next("sendMessage", 500)
    assert (await connector.send(out(to=43))).status == "retry"
    await telegram.stop()
    down = await connector.send(out(to=44))
    assert down.status == "retry" and "unreachable" in (down.reason or "")
    await telegram.start()
    assert (await connector.send(out(to=45))).status == "sent"


async def test_limiter_spaces_messages_to_one_chat_but_not_to_others(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot()
    started = time.monotonic()
    results = await asyncio.gather(
        connector.send(out("first")),
        connector.send(out("second")),
        connector.send(out("someone else", to=777)),
    )
    assert [r.status for r in results] == ["sent"] * 3
    by_text = {m["text"]: m["_at"] for m in telegram.sent}
    assert by_text["second"] - by_text["first"] >= 0.8  # about one per second per chat
    assert by_text["someone else"] - started < 0.9  # another chat is not held back
    assert [m["text"] for m in telegram.sent if m["chat"]["id"] == USER] == ["first", "second"]


async def test_a_long_backlog_for_one_chat_is_handed_back_as_retry(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot(per_chat_rate=0.5, max_send_wait=1.0)
    assert (await connector.send(out("one"))).status == "sent"
    result = await connector.send(out("two"))  # would wait 2 s > max_send_wait
    assert result.status == "retry" and (result.retry_after or 0) >= 1.0
    assert [m["text"] for m in telegram.sent] == ["one"]


async def test_long_text_is_split_into_telegram_sized_messages(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    connector, _ = await make_bot(per_chat_rate=100)
    text = ("word " * 1000).strip()  # 4999 characters
    result = await connector.send(out(text))
    assert result.status == "sent"
    parts = [m["text"] for m in telegram.sent]
    assert len(parts) == 2 and "".join(parts) == text
    assert result.provider_message_id == f"{USER}:{telegram.sent[0]['message_id']}"


def test_split_text_respects_utf16_length() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 code units
    parts = split_text(emoji)
    assert "".join(parts) == emoji
    assert all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in parts)
    assert split_text("short") == ["short"]


def test_token_buckets() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=1, clock=lambda: now[0])
    assert [bucket.reserve(), bucket.reserve(), bucket.reserve()] == [0.0, 1.0, 2.0]
    burst = TokenBucket(rate=30.0, burst=30, clock=lambda: now[0])
    delays = [burst.reserve() for _ in range(31)]
    assert delays[:30] == [0.0] * 30 and delays[30] == pytest.approx(1 / 30)
    limiter = FloodLimiter(1.0, 30.0, clock=lambda: now[0])
    assert limiter.reserve("a") == 0.0
    assert limiter.reserve("a", max_wait=0.5) is None  # nothing taken
    now[0] = 1.0
    assert limiter.reserve("a") == 0.0
    limiter.pause("b", 5)
    assert limiter.reserve("b") == pytest.approx(5.0)


def test_settings_are_validated() -> None:
    token = "123:abc"
    assert TelegramSettings(token=token).mode == "polling"
    with pytest.raises(ValidationError, match="webhook_secret"):
        TelegramSettings(token=token, mode="webhook")
    with pytest.raises(ValidationError):
        TelegramSettings(token=token, mode="webhook", webhook_secret="has spaces")
    with pytest.raises(ValidationError):
        TelegramSettings.model_validate({"token": token, "unknown": 1})
    with pytest.raises(ValidationError):
        TelegramSettings(token="not a token")
