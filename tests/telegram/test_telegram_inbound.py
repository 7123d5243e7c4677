"""Telegram inbound: polling (offset after submit), webhook (secret), media, edits."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from connectors.base import Identity
from tests.standins.context import PUBLIC_URL as PUBLIC
from tests.standins.context import ChannelFactory as BotFactory
from tests.standins.telegram import WEBHOOK_SECRET as SECRET
from tests.standins.telegram import TelegramStandin

WEBHOOK_PATH = "/channels/tg/telegram/webhook"


async def test_polling_text_message_becomes_an_inbound_message(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    update = telegram.push_message(text="¿Dónde está mi pedido?")
    _, gw = await make_bot()
    await gw.wait_stored(1)
    [msg] = gw.messages.values()
    chat_id, message_id = update["message"]["chat"]["id"], update["message"]["message_id"]
    assert msg.external_id == f"{chat_id}:{message_id}"
    assert msg.sender == Identity("telegram", "5550001")
    assert msg.sender_name == "Ana García"
    assert msg.contact_attributes == {"language": "es"}
    assert msg.text == "¿Dónde está mi pedido?"
    assert msg.edits is None and msg.automated is False


async def test_offset_advances_only_after_submit_and_a_failed_submit_is_redelivered(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    first = telegram.push_message(text="first")
    second = telegram.push_message(text="second")
    connector, gw = await make_bot(start=False)
    gw.fail_submits = 1  # the store refuses the first attempt
    await gw.start()
    await connector.start()
    await gw.wait_stored(2)
    ids = [first["update_id"], second["update_id"]]
    # The first update was handed out again after its submit failed; stored once each.
    assert telegram.served.count(ids[0]) >= 2
    assert [m.text for m in gw.messages.values()] == ["first", "second"]
    assert [getattr(s, "text", None) for s in gw.submits] == ["first", "first", "second"]
    assert await gw.kv.get("last_update_id") == str(ids[1])
    # The poll after the failed submit did not confirm (drop) the failed update.
    offsets = [r.params.get("offset") for r in telegram.requests_for("getUpdates")]
    assert offsets[0] is None and offsets[1] in (None, ids[0]), offsets
    for _ in range(100):
        if ids[1] + 1 in [r.params.get("offset") for r in telegram.requests_for("getUpdates")]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("offset never advanced past the last stored update")


async def test_restart_resumes_after_the_last_handled_update(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    from tests.standins.context import FakeGateway

    gw = FakeGateway(public_url=PUBLIC)
    await gw.start()
    try:
        old = telegram.push_message(text="handled before the restart")
        await gw.kv.set("last_update_id", str(old["update_id"]))
        telegram.push_message(text="new one")
        connector, _ = await make_bot(gateway=gw)
        await gw.wait_stored(1)
        await connector.stop()
        assert [m.text for m in gw.messages.values()] == ["new one"]
        first_poll = telegram.requests_for("getUpdates")[0]
        assert first_poll.params["offset"] == old["update_id"] + 1
    finally:
        await gw.close()


async def test_photo_document_and_voice_are_downloaded_as_attachments(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    small = telegram.add_file(b"\xff\xd8thumb", "photos/file_1.jpg")
    large = telegram.add_file(b"\xff\xd8" + b"L" * 3000, "photos/file_2.jpg")
    pdf = telegram.add_file(b"%PDF-1.7 invoice", "documents/file_3.pdf")
    ogg = telegram.add_file(b"OggS voice", "voice/file_4.oga")
    huge = telegram.add_file(b"Z" * 50_000, "documents/file_5.zip")
    telegram.push_message(
        caption="the box was crushed",
        photo=[
            {**small, "width": 90, "height": 90},
            {**large, "width": 1280, "height": 960},
        ],
    )
    telegram.push_message(
        document={**pdf, "file_name": "invoice-42.pdf", "mime_type": "application/pdf"}
    )
    telegram.push_message(voice={**ogg, "duration": 3, "mime_type": "audio/ogg"})
    telegram.push_message(
        document={**huge, "file_name": "logs.zip", "mime_type": "application/zip"}
    )
    _, gw = await make_bot(max_file_bytes=10_000)
    await gw.wait_stored(4)
    photo, doc, voice, too_big = gw.messages.values()
    assert photo.text == "the box was crushed"
    [p] = photo.attachments
    assert (p.content_type, p.data, p.size) == ("image/jpeg", b"\xff\xd8" + b"L" * 3000, 3002)
    [d] = doc.attachments
    assert (d.name, d.content_type, d.data) == (
        "invoice-42.pdf",
        "application/pdf",
        b"%PDF-1.7 invoice",
    )
    [v] = voice.attachments
    assert (v.content_type, v.data) == ("audio/ogg", b"OggS voice") and v.name.endswith(".ogg")
    [z] = too_big.attachments
    assert (z.name, z.size, z.data) == ("logs.zip", 50_000, None)
    # The file URL carries the bot token: it must not be stored anywhere.
    for m in gw.messages.values():
        assert all(a.url is None for a in m.attachments)
        assert telegram.token.encode() not in (m.raw or b"")


async def test_edited_message_points_at_the_original(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    original = telegram.push_message(text="order 1234")
    telegram.push_edit(original, "order 1243, sorry")
    _, gw = await make_bot()
    await gw.wait_stored(2)
    first, edit = gw.messages.values()
    assert edit.edits == first.external_id
    assert edit.external_id != first.external_id
    assert edit.text == "order 1243, sorry"


async def test_group_messages_are_ignored_for_private_only_bots(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    telegram.push_message(text="hi all", chat={"id": -100200, "type": "supergroup", "title": "x"})
    last = telegram.push_message(text="just me")
    _, gw = await make_bot()
    await gw.wait_stored(1)
    for _ in range(50):
        if await gw.kv.get("last_update_id") == str(last["update_id"]):
            break
        await asyncio.sleep(0.02)
    assert [m.text for m in gw.messages.values()] == ["just me"]


async def test_stop_interrupts_a_long_poll(telegram: TelegramStandin, make_bot: BotFactory) -> None:
    connector, _ = await make_bot(poll_timeout=30)
    await telegram.wait_request("getUpdates")
    await asyncio.sleep(0.1)  # the long poll is now waiting at the stand-in
    started = time.monotonic()
    await connector.stop()
    assert time.monotonic() - started < 2


async def test_webhook_mode_registers_the_webhook_with_its_secret(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    await make_bot(mode="webhook")
    assert telegram.webhook is not None
    assert telegram.webhook["url"] == PUBLIC + WEBHOOK_PATH
    assert telegram.webhook["secret_token"] == SECRET
    # Callback queries: the survey buttons (inline keyboard) answer through them.
    assert set(telegram.webhook["allowed_updates"]) == {
        "message",
        "edited_message",
        "callback_query",
    }


async def test_webhook_checks_the_secret_and_stores_each_update_once(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    _, gw = await make_bot(mode="webhook")
    target = gw.url + WEBHOOK_PATH
    update = telegram.push_message(text="via webhook")
    async with aiohttp.ClientSession() as s:
        assert await telegram.deliver_webhook(s, target, secret="wrong-secret") == [403]
        async with s.post(target, json=update) as resp:  # no secret header at all
            assert resp.status == 403
        assert gw.submits == []
        assert await telegram.deliver_webhook(s, target) == [200]
        # Telegram delivering the same update again (e.g. our answer was lost).
        telegram.push_update(update)
        assert await telegram.deliver_webhook(s, target) == [200]
    assert [m.text for m in gw.messages.values()] == ["via webhook"]
    assert await gw.kv.get("last_update_id") == str(update["update_id"])


async def test_webhook_answers_error_until_the_update_is_stored(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    _, gw = await make_bot(mode="webhook")
    target = gw.url + WEBHOOK_PATH
    telegram.push_message(text="keep trying")
    gw.fail_submits = 1
    async with aiohttp.ClientSession() as s:
        first = await telegram.deliver_webhook(s, target)
        assert first[0] >= 500 and not gw.messages
        assert await telegram.deliver_webhook(s, target) == [200]
    assert [m.text for m in gw.messages.values()] == ["keep trying"]


async def test_webhook_malformed_and_oversized_bodies(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    _, gw = await make_bot(mode="webhook", max_body_bytes=2048)
    target = gw.url + WEBHOOK_PATH
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for body in (b"{not json", b"[1, 2]", json.dumps({"message": {}}).encode()):
            async with s.post(target, data=body, headers=headers) as resp:
                assert resp.status == 400, body
        big = json.dumps({"update_id": 1, "message": {"text": "x" * 5000}}).encode()
        async with s.post(target, data=big, headers=headers) as resp:
            assert resp.status == 413
    assert gw.submits == []


async def test_start_reports_a_bad_token_and_an_unreachable_api(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    import pytest

    from connectors.base import AuthFailed, NotReady

    connector, _ = await make_bot(start=False, token="999:wrongtoken")
    with pytest.raises(AuthFailed):
        await connector.start()
    await telegram.stop()
    connector, _ = await make_bot(start=False)
    with pytest.raises(NotReady):
        await connector.start()


async def test_webhook_needs_an_https_public_url(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    import pytest

    from connectors.telegram.connector import ChannelMisconfigured
    from tests.standins.context import FakeGateway

    gw = FakeGateway(public_url="")
    try:
        connector, _ = await make_bot(gateway=gw, start=False, mode="webhook")
        with pytest.raises(ChannelMisconfigured, match="public_url"):
            await connector.start()
        gw.ctx.public_url = "http://127.0.0.1:8080"  # Telegram only calls HTTPS webhooks
        with pytest.raises(ChannelMisconfigured, match=r"(?i)https url"):
            await connector.start()
        assert telegram.webhook is None
    finally:
        await gw.close()


async def test_webhook_update_the_parser_cannot_read_is_quarantined_not_refused(
    telegram: TelegramStandin, make_bot: BotFactory
) -> None:
    # A sticker without the fields python-telegram-bot requires: Telegram would retry a
    # refused update and finally drop it, so the message would be lost unseen.
    _, gw = await make_bot(mode="webhook")
    target = gw.url + WEBHOOK_PATH
    sticker = telegram.push_message(text="placeholder")
    del sticker["message"]["text"]
    sticker["message"]["sticker"] = {"file_id": "abc"}
    async with aiohttp.ClientSession() as s:
        assert await telegram.deliver_webhook(s, target, secret="wrong-secret") == [403]
        assert gw.quarantined == []
        assert await telegram.deliver_webhook(s, target) == [200]
        telegram.push_message(text="after the sticker")
        assert await telegram.deliver_webhook(s, target) == [200]
    [(item, reason)] = gw.quarantined
    assert item.external_id == str(sticker["update_id"])
    assert json.loads(item.data) == sticker
    assert reason.startswith("unreadable update: TypeError") and "Sticker" in reason
    assert [m.text for m in gw.messages.values()] == ["after the sticker"]
    assert await gw.kv.get("last_update_id") == str(sticker["update_id"] + 1)
