"""Inbound Twilio webhooks over real HTTP: signatures, TwiML, media, status callbacks."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl, urlencode

import aiohttp

from connectors.base import Identity, InboundMessage
from connectors.twilio import SignatureVerifier
from tests.standins.context import PUBLIC_URL as PUBLIC
from tests.standins.context import ChannelFactory as Factory
from tests.standins.context import FakeGateway
from tests.standins.twilio import CHANNEL_NUMBER as SMS_NUMBER
from tests.standins.twilio import CUSTOMER_NUMBER as CUSTOMER
from tests.standins.twilio import TwilioStandin

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
PATH = "/channels/sms/twilio/inbound"


async def test_inbound_sms_is_stored_and_answered_with_empty_twiml(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "My order #123 never arrived")
    async with aiohttp.ClientSession() as s:
        status, ctype, text = await twilio.post_webhook(
            s, gw.url + PATH, params, signed_url=PUBLIC + PATH
        )
    assert (status, ctype, text) == (200, "text/xml", EMPTY_TWIML)
    [msg] = gw.messages.values()
    assert isinstance(msg, InboundMessage)
    assert msg.external_id == params["MessageSid"]
    assert msg.sender == Identity("phone", CUSTOMER)
    assert msg.text == "My order #123 never arrived"
    assert msg.metadata["to"] == SMS_NUMBER


async def test_webhook_is_acknowledged_only_after_submit_succeeded(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    gw.fail_submits = 1
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "hello?")
    async with aiohttp.ClientSession() as s:
        first = await twilio.post_webhook(s, gw.url + PATH, params, signed_url=PUBLIC + PATH)
        assert first[0] == 503 and not gw.messages
        second = await twilio.post_webhook(s, gw.url + PATH, params, signed_url=PUBLIC + PATH)
    assert second[0] == 200
    assert list(gw.messages) == [params["MessageSid"]]


async def test_missing_forged_and_foreign_signatures_are_refused_and_stored_nowhere(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "pay me")
    good = twilio.sign(PUBLIC + PATH, params)
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + PATH, data=params) as resp:  # no signature header
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "forbidden"
        tampered = dict(params, Body="send the refund to my other card")
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, tampered, signature=good)
        assert status == 403
        other_token = SignatureVerifier("not-the-auth-token").sign(PUBLIC + PATH, params)
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, params, signature=other_token)
        assert status == 403
        # Signed for the URL it was sent to, but Twilio signs the public URL.
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, params)
        assert status == 403
        # Correctly signed, but for another Twilio account.
        foreign = dict(params, AccountSid="AC" + "f" * 32)
        status, _, _ = await twilio.post_webhook(
            s, gw.url + PATH, foreign, signed_url=PUBLIC + PATH
        )
        assert status == 403
    assert gw.submits == [] and gw.messages == {}


async def test_replayed_webhook_is_accepted_once(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "only once please")
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            status, _, text = await twilio.post_webhook(
                s, gw.url + PATH, params, signed_url=PUBLIC + PATH
            )
            assert (status, text) == (200, EMPTY_TWIML)
    assert len(gw.submits) == 2
    assert list(gw.messages) == [params["MessageSid"]]


async def test_signature_over_public_url_with_or_without_default_port_and_query(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel(webhook_base_url="https://mycompany.com")
    async with aiohttp.ClientSession() as s:
        for i, signed in enumerate(
            [
                f"https://mycompany.com{PATH}?foo=1&bar=2",
                f"https://mycompany.com:443{PATH}?foo=1&bar=2",
            ]
        ):
            params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, f"port variant {i}")
            status, _, _ = await twilio.post_webhook(
                s, gw.url + PATH + "?foo=1&bar=2", params, signed_url=signed
            )
            assert status == 200
        # The query is part of what Twilio signs.
        params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "query dropped")
        status, _, _ = await twilio.post_webhook(
            s, gw.url + PATH + "?foo=1&bar=2", params, signed_url=f"https://mycompany.com{PATH}"
        )
        assert status == 403
    assert sorted(m.text for m in gw.messages.values()) == ["port variant 0", "port variant 1"]


async def test_json_body_with_body_sha256_is_verified(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "sent as JSON")
    body = json.dumps(params)
    query = "bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
    signature = twilio.sign(f"{PUBLIC}{PATH}?{query}", {})
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}{PATH}?{query}", data=body, headers=headers) as resp:
            assert resp.status == 200
        forged = body.replace("sent as JSON", "forged JSON")
        async with s.post(f"{gw.url}{PATH}?{query}", data=forged, headers=headers) as resp:
            assert resp.status == 403
    assert [m.text for m in gw.messages.values()] == ["sent as JSON"]


async def test_malformed_and_oversized_bodies(twilio: TwilioStandin, make_channel: Factory) -> None:
    _, gw = await make_channel(max_body_bytes=4096)
    sig = {
        "X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "Content-Type": ("application/x-www-form-urlencoded"),
    }
    async with aiohttp.ClientSession() as s:
        for bad in (b"From=%2B1415&Body", b"a=1&&b=2"):
            async with s.post(gw.url + PATH, data=bad, headers=sig) as resp:
                assert resp.status == 400, bad
        # Parameters that are not UTF-8 are checked like any other: unsigned is forged.
        async with s.post(gw.url + PATH, data=b"Body=%FF%FE&From=x", headers=sig) as resp:
            assert resp.status == 403
        params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "x" * 10_000)
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, params, signed_url=PUBLIC + PATH)
        assert status == 413
        # Signed and well-formed, but not a message (a voice call webhook pointed here):
        # kept in quarantine for a person to see, answered 200 so Twilio does not retry.
        call = {"CallSid": "CA1234567890ABCDE", "From": CUSTOMER, "To": SMS_NUMBER}
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, call, signed_url=PUBLIC + PATH)
        assert status == 200
    assert gw.submits == []
    [(item, reason)] = gw.quarantined
    assert reason == "unreadable webhook: missing MessageSid"
    assert b"CallSid=CA1234567890ABCDE" in item.data


async def test_mms_media_is_fetched_with_account_credentials_and_size_limited(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel(max_media_bytes=1000)
    photo = b"\xff\xd8\xff\xe0" + b"p" * 500
    video = b"v" * 5000
    photo_url = twilio.add_media(photo, "image/jpeg")
    video_url = twilio.add_media(video, "video/mp4")
    params = twilio.inbound_params(
        CUSTOMER,
        SMS_NUMBER,
        "see the damage",
        media=[(photo_url, "image/jpeg"), (video_url, "video/mp4")],
    )
    async with aiohttp.ClientSession() as s:
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, params, signed_url=PUBLIC + PATH)
    assert status == 200
    [msg] = gw.messages.values()
    small, big = msg.attachments
    assert (small.content_type, small.data, small.size, small.url) == (
        "image/jpeg",
        photo,
        len(photo),
        photo_url,
    )
    assert small.name.endswith(".jpg")
    assert (big.content_type, big.data, big.url) == ("video/mp4", None, video_url)
    assert big.size == len(video)
    media_requests = [r for r in twilio.requests if "/Media/" in r.path]
    assert len(media_requests) == 2
    assert all(r.headers.get("Authorization", "").startswith("Basic ") for r in media_requests)


async def test_unfetchable_media_keeps_the_message(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    gone = twilio.add_media(b"x", "image/png").rsplit("/", 1)[0] + "/ME" + "0" * 32
    params = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "pic", media=[(gone, "image/png")])
    async with aiohttp.ClientSession() as s:
        status, _, _ = await twilio.post_webhook(s, gw.url + PATH, params, signed_url=PUBLIC + PATH)
    assert status == 200
    [msg] = gw.messages.values()
    [att] = msg.attachments
    assert (att.url, att.content_type, att.data) == (gone, "image/png", None)


async def test_sms_and_whatsapp_from_one_number_are_one_phone_identity(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    gw = FakeGateway(public_url=PUBLIC)
    try:
        await make_channel("sms", gateway=gw, start=False)
        await make_channel("whatsapp", gateway=gw, start=False, from_number="whatsapp:+14155238886")
        await gw.start()
        sms = twilio.inbound_params(CUSTOMER, SMS_NUMBER, "by sms")
        wa = twilio.inbound_params(
            "whatsapp:" + CUSTOMER, "whatsapp:+14155238886", "by whatsapp", profile_name="Ana"
        )
        wa_path = "/channels/wa/twilio/inbound"
        async with aiohttp.ClientSession() as s:
            assert (await twilio.post_webhook(s, gw.url + PATH, sms, signed_url=PUBLIC + PATH))[
                0
            ] == 200
            assert (
                await twilio.post_webhook(s, gw.url + wa_path, wa, signed_url=PUBLIC + wa_path)
            )[0] == 200
        by_sms, by_wa = gw.messages[sms["MessageSid"]], gw.messages[wa["MessageSid"]]
        assert by_sms.sender == by_wa.sender == Identity("phone", CUSTOMER)
        assert by_wa.sender_name == "Ana"
    finally:
        await gw.close()


async def test_status_callbacks_become_delivery_receipts(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    from connectors.base import OutboundMessage

    connector, gw = await make_channel()
    result = await connector.send(
        OutboundMessage(id="o1", conversation_id="c1", to=Identity("phone", CUSTOMER), text="hi")
    )
    assert result.status == "sent" and result.provider_message_id
    sid = result.provider_message_id
    local_status = gw.url + "/channels/sms/twilio/status"
    async with aiohttp.ClientSession() as s:
        for status in ("sent", "delivered", "undelivered"):
            code = 30003 if status == "undelivered" else None
            answer = await twilio.post_status(s, sid, status, error_code=code, url=local_status)
            assert answer[:2] == (200, "text/xml")
        # A forged callback (signed with another token) changes nothing.
        params = {"MessageSid": sid, "MessageStatus": "read", "AccountSid": twilio.account_sid}
        forged = SignatureVerifier("wrong").sign(PUBLIC + "/channels/sms/twilio/status", params)
        assert (await twilio.post_webhook(s, local_status, params, signature=forged))[0] == 403
    assert [(r.provider_message_id, r.status, r.reason) for r in gw.receipts] == [
        (sid, "delivered", None),
        (sid, "failed", "twilio error 30003: Unreachable destination handset"),
    ]


async def test_signed_webhook_with_a_field_that_is_not_utf8_is_quarantined(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    _, gw = await make_channel()
    params = [(k, v.encode()) for k, v in twilio.inbound_params(CUSTOMER, SMS_NUMBER, "").items()]
    params = [(k, b"\xff\xfe" if k == "Body" else v) for k, v in params]
    body = urlencode(params).encode()
    assert b"Body=%FF%FE" in body
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as s:
        forged = dict(
            headers,
            **{"X-Twilio-Signature": twilio.sign_bytes(PUBLIC + "/x", params)},
        )
        async with s.post(gw.url + PATH, data=body, headers=forged) as resp:
            assert resp.status == 403
        assert gw.quarantined == []
        signed = dict(
            headers,
            **{"X-Twilio-Signature": twilio.sign_bytes(PUBLIC + PATH, params)},
        )
        async with s.post(gw.url + PATH, data=body, headers=signed) as resp:
            assert (resp.status, await resp.text()) == (200, EMPTY_TWIML)
    assert gw.submits == []
    [(item, reason)] = gw.quarantined
    assert reason == "unreadable webhook: Body is not UTF-8"
    assert item.external_id == dict(params)["MessageSid"].decode()
    kept = parse_qsl(item.data.decode("ascii"), keep_blank_values=True, encoding="latin-1")
    assert [(k, v.encode("latin-1")) for k, v in kept] == params
