"""Twilio SMS and WhatsApp through the whole running gateway: signed webhooks in, routed,
agent replies out through the outbox to the Twilio stand-in, status callbacks, refused
webhooks, provider trouble, and one contact across SMS and WhatsApp."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.gateway.conftest import (
    ADMIN,
    Client,
    agent_token,
    base_config,
    gateway_factory,
    wait_for,
)
from tests.standins.server import free_port
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, WHATSAPP_NUMBER, TwilioStandin

__all__ = ["gateway_factory"]

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SMS_INBOUND = "/channels/sms/twilio/inbound"
WA_INBOUND = "/channels/wa/twilio/inbound"


def twilio_config(
    tmp_path: Path, twilio: TwilioStandin, *, whatsapp: bool = False, **outbox: Any
) -> tuple[dict[str, Any], str]:
    """A config with an SMS channel (and a WhatsApp one) on the stand-in, and the gateway's
    own base URL (fixed port) as the URL Twilio signs."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["port"] = port
    cfg["outbox"].update(outbox)
    common = {
        "account_sid": twilio.account_sid,
        "auth_token": twilio.auth_token,
        "api_base_url": twilio.url,
        "webhook_base_url": base,
        "request_timeout": 3,
    }
    cfg["channels"].append(
        {"name": "sms", "type": "twilio_sms", "from_number": CHANNEL_NUMBER, **common}
    )
    if whatsapp:
        cfg["channels"].append(
            {"name": "wa", "type": "twilio_whatsapp", "from_number": WHATSAPP_NUMBER, **common}
        )
    return cfg, base


async def start(gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, **kw: Any) -> Client:
    cfg, base = twilio_config(tmp_path, twilio, **kw)
    client: Client
    _, client = await gateway_factory(cfg)
    assert client.base == base
    return client


async def post_sms(
    client: Client, twilio: TwilioStandin, body: str, **kw: Any
) -> tuple[int, str, str, dict[str, str]]:
    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, body, **kw)
    status, ctype, text = await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params)
    return status, ctype, text, params


async def all_conversations(client: Client) -> list[dict[str, Any]]:
    status, page = await client.call("GET", "/v1/conversations?limit=500")
    assert status == 200, page
    return list(page["conversations"])


async def routed_conversation(client: Client) -> dict[str, Any]:
    convs = await wait_for(lambda: client.conversations_of(f"phone:{CUSTOMER_NUMBER}"))
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
    assert msg["status"] == "queued"
    return dict(msg)


async def message_in(client: Client, conv_id: str, msg_id: str) -> dict[str, Any]:
    conv = await client.conversation(conv_id)
    return next(m for m in conv["messages"] if m["id"] == msg_id)


async def sms_retries(client: Client) -> float:
    """Delivery attempts on the SMS channel that ended in `retry`, from /metrics."""
    status, text = await client.call("GET", "/metrics")
    assert status == 200, text
    key = 'switchboard_messages_sent_total{channel="sms",status="retry"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


async def retried(client: Client, at_least: float) -> bool:
    return await sms_retries(client) >= at_least


async def status_is(
    client: Client, conv_id: str, msg_id: str, *statuses: str
) -> dict[str, Any] | None:
    msg = await message_in(client, conv_id, msg_id)
    return msg if msg["status"] in statuses else None


async def test_sms_in_routed_reply_out_and_delivered(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    status, ctype, text, params = await post_sms(
        client, twilio, "I was charged twice, I need a refund"
    )
    assert (status, ctype, text) == (200, "text/xml", EMPTY_TWIML)

    conv = await routed_conversation(client)
    assert conv["channel"] == "sms" and conv["channel_kind"] == "twilio_sms"
    assert conv["queue"] == "billing" and conv["assignee"] == "alice"
    [inbound] = (await client.conversation(conv["id"]))["messages"]
    assert inbound["direction"] == "in"
    assert inbound["text"] == "I was charged twice, I need a refund"
    assert inbound["external_id"] == params["MessageSid"]

    out = await reply(client, conv, "Sorry! The refund is on its way.")
    await wait_for(lambda: twilio.messages)
    [created] = twilio.messages
    sent_form = created["_request"]
    assert sent_form["To"] == CUSTOMER_NUMBER
    assert sent_form["From"] == CHANNEL_NUMBER
    assert sent_form["Body"] == "Sorry! The refund is on its way."
    assert sent_form["StatusCallback"] == client.base + "/channels/sms/twilio/status"
    sent = await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"))
    assert sent["provider_message_id"] == created["sid"]

    # Twilio reports the handset got it.
    status, ctype, text = await twilio.post_status(client.http, created["sid"], "delivered")
    assert (status, text) == (200, EMPTY_TWIML)
    delivered = await wait_for(lambda: status_is(client, conv["id"], out["id"], "delivered"))
    assert delivered["reason"] is None
    # A late intermediate status does not move it backwards.
    status, _, _ = await twilio.post_status(client.http, created["sid"], "sent")
    assert status == 200
    assert (await message_in(client, conv["id"], out["id"]))["status"] == "delivered"


async def test_forged_replayed_malformed_and_oversized_webhooks(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    url = client.base + SMS_INBOUND

    # Forged: signed with another auth token, and a valid signature over other params.
    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "send me the money")
    forged = TwilioStandin(auth_token="not-the-real-auth-token").sign(url, params)
    status, _, _ = await twilio.post_webhook(client.http, url, params, signature=forged)
    assert status == 403
    other = dict(params, Body="something else")
    status, _, _ = await twilio.post_webhook(
        client.http, url, params, signature=twilio.sign(url, other)
    )
    assert status == 403
    status, _, _ = await twilio.post_webhook(client.http, url, params, signature="")
    assert status == 403
    assert await all_conversations(client) == []

    # Replayed: Twilio retries with the same MessageSid; answered 200, stored once.
    status, _, _, first = await post_sms(client, twilio, "where is my parcel?")
    assert status == 200
    for _ in range(2):
        status, ctype, text = await twilio.post_webhook(client.http, url, first)
        assert (status, ctype, text) == (200, "text/xml", EMPTY_TWIML)
    convs = await wait_for(lambda: client.conversations_of(f"phone:{CUSTOMER_NUMBER}"))
    assert len(convs) == 1
    messages = (await client.conversation(convs[0]["id"]))["messages"]
    assert [m["external_id"] for m in messages] == [first["MessageSid"]]

    # A field that is not UTF-8: forged, refused like any forgery; signed by Twilio (over
    # the bytes as sent), kept in quarantine as it came and answered 200.
    bad = [("Body", b"\xff\xfe"), ("From", b"+14155550123"), ("MessageSid", b"SMx")]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for signature, expected in (("whatever", 403), (twilio.sign_bytes(url, bad), 200)):
        async with client.http.post(
            url, data=urlencode(bad).encode(), headers={**form, "X-Twilio-Signature": signature}
        ) as resp:
            assert resp.status == expected
    _, kept = await client.call("GET", "/v1/quarantine")
    [not_utf8] = kept["items"]
    assert (not_utf8["external_id"], not_utf8["reason"]) == (
        "SMx",
        "unreadable webhook: Body is not UTF-8",
    )
    async with client.http.get(
        f"{client.base}/v1/quarantine/{not_utf8['id']}/raw",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as resp:
        assert await resp.read() == b"Body=%FF%FE&From=%2B14155550123&MessageSid=SMx"
    status, _ = await client.call("POST", f"/v1/quarantine/{not_utf8['id']}/dismiss")
    assert status == 200
    # Signed by Twilio but unreadable (no From): kept in quarantine and answered 200, so
    # Twilio does not redeliver what will never be readable.
    no_from = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "hi")
    no_from.pop("From")
    status, _, _ = await twilio.post_webhook(client.http, url, no_from)
    assert status == 200
    _, kept = await client.call("GET", "/v1/quarantine?status=new")
    assert [(i["channel"], i["external_id"], i["reason"]) for i in kept["items"]] == [
        ("sms", no_from["MessageSid"], "unreadable webhook: missing From")
    ]

    # Oversized: over server.max_body_bytes (64 KiB in base_config), even if signed.
    huge = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "x" * 70_000)
    status, _, _ = await twilio.post_webhook(client.http, url, huge)
    assert status == 413

    # Nothing extra stored, and the gateway is still up and accepting.
    assert len(await all_conversations(client)) == 1
    messages = (await client.conversation(convs[0]["id"]))["messages"]
    assert [m["external_id"] for m in messages] == [first["MessageSid"]]
    assert (await client.call("GET", "/healthz"))[0] == 200
    status, _, _, _ = await post_sms(client, twilio, "still there?")
    assert status == 200
    await wait_for(lambda: _count_in(client, convs[0]["id"], 2))


async def _count_in(client: Client, conv_id: str, n: int) -> bool:
    conv = await client.conversation(conv_id)
    return len([m for m in conv["messages"] if m["direction"] == "in"]) >= n


async def test_429_then_500_then_success_is_delivered_once(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio, max_attempts=6)
    await post_sms(client, twilio, "hello, anyone?")
    conv = await routed_conversation(client)
    twilio.fail_next(429, retry_after="0.2")
    twilio.fail_next(500)
    out = await reply(client, conv, "Hi! How can I help?")
    sent = await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"), timeout=10)
    creates = [r for r in twilio.requests if r.path.endswith("/Messages.json")]
    assert len(creates) == 3  # 429, 500, 201
    # Retry-After honoured: the second attempt waited ~0.2 s after the 429.
    assert creates[1].at - creates[0].at >= 0.15
    # `sent` is recorded only after Twilio answered 201: no further attempt can follow.
    [created] = twilio.messages
    assert created["body"] == "Hi! How can I help?" and created["to"] == CUSTOMER_NUMBER
    assert sent["provider_message_id"] == created["sid"]
    assert (await message_in(client, conv["id"], out["id"]))["status"] == "sent"


async def test_twilio_down_for_a_while_then_delivered_once(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio, max_attempts=50)
    await post_sms(client, twilio, "my router is blinking red")
    conv = await routed_conversation(client)
    await twilio.stop()
    before = await sms_retries(client)
    out = await reply(client, conv, "Please unplug it for 10 seconds.")
    await wait_for(lambda: retried(client, before + 3), timeout=10)  # three attempts failed
    msg = await message_in(client, conv["id"], out["id"])
    assert msg["status"] == "queued", msg  # still trying, not failed
    assert twilio.messages == []
    await twilio.start()
    await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"), timeout=10)
    # `sent` is recorded only after Twilio answered 201: no further attempt can follow.
    [created] = twilio.messages
    assert created["body"] == "Please unplug it for 10 seconds."
    assert (await message_in(client, conv["id"], out["id"]))["status"] == "sent"


async def test_sms_and_whatsapp_from_one_number_are_one_contact(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio, whatsapp=True)
    status, _, _, _ = await post_sms(client, twilio, "Texting you about order 42")
    assert status == 200
    wa = twilio.inbound_params(
        "whatsapp:" + CUSTOMER_NUMBER,
        "whatsapp:" + WHATSAPP_NUMBER,
        "Same here on WhatsApp",
        profile_name="Dana",
    )
    status, _, text = await twilio.post_webhook(client.http, client.base + WA_INBOUND, wa)
    assert (status, text) == (200, EMPTY_TWIML)

    status, found = await client.call(
        "GET", "/v1/contacts", params={"identity": f"phone:{CUSTOMER_NUMBER}"}
    )
    assert status == 200, found
    [contact] = found["contacts"]
    assert ("phone", CUSTOMER_NUMBER) in {(i["kind"], i["address"]) for i in contact["identities"]}
    convs = await client.conversations_of(f"phone:{CUSTOMER_NUMBER}")
    assert len(convs) == 1
    conv = await wait_for(lambda: client.assigned(convs[0]["id"]))
    history = [(m["channel"], m["text"]) for m in conv["messages"]]
    assert history == [("sms", "Texting you about order 42"), ("wa", "Same here on WhatsApp")]
    assert conv["last_channel"] == "wa"

    # The reply goes back where the customer last wrote: WhatsApp.
    out = await reply(client, conv, "Got it, Dana.")
    await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"))
    [created] = twilio.messages
    assert created["_request"]["To"] == "whatsapp:" + CUSTOMER_NUMBER
    assert created["_request"]["From"] == "whatsapp:" + WHATSAPP_NUMBER
    assert created["_request"]["Body"] == "Got it, Dana."


async def test_undelivered_status_callback_fails_the_reply_with_the_carrier_reason(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    await post_sms(client, twilio, "call me back")
    conv = await routed_conversation(client)
    out = await reply(client, conv, "We tried to call you.")
    await wait_for(lambda: status_is(client, conv["id"], out["id"], "sent"))
    [created] = twilio.messages
    status, _, _ = await twilio.post_status(
        client.http, created["sid"], "undelivered", error_code=30003
    )
    assert status == 200
    failed = await wait_for(lambda: status_is(client, conv["id"], out["id"], "failed"))
    assert failed["reason"] == "twilio error 30003: Unreachable destination handset"
    # A status callback for a message we never sent changes nothing and is acknowledged.
    twilio.messages.append(dict(created, sid="SM" + "0" * 32))
    status, _, _ = await twilio.post_status(client.http, "SM" + "0" * 32, "delivered")
    assert status == 200
    assert (await message_in(client, conv["id"], out["id"]))["status"] == "failed"
