"""Outbound through Twilio's REST Messages resource (the stand-in), and start()."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from pydantic import ValidationError

from connectors.base import AuthFailed, Choice, Identity, NotReady, OutboundMessage, Prompt
from connectors.twilio import TwilioSmsSettings, TwilioWhatsAppConnector, TwilioWhatsAppSettings
from tests.standins.context import PUBLIC_URL as PUBLIC
from tests.standins.context import ChannelFactory as Factory
from tests.standins.twilio import CHANNEL_NUMBER as SMS_NUMBER
from tests.standins.twilio import CUSTOMER_NUMBER as CUSTOMER
from tests.standins.twilio import WHATSAPP_NUMBER, TwilioStandin

WA_NUMBER = WHATSAPP_NUMBER
TEMPLATE = {
    "content_sid": "HX" + "b" * 32,
    "variables": {"1": "{sender_name}", "2": "{conversation_id}"},
}


def out(
    text: str = "Your refund is on its way.", to: str = CUSTOMER, **kw: object
) -> OutboundMessage:
    return OutboundMessage(
        id="out-1", conversation_id="conv-9", to=Identity("phone", to), text=text, **kw
    )  # type: ignore[arg-type]


async def test_send_sms_creates_a_message_and_returns_its_sid(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, _ = await make_channel()
    result = await connector.send(out())
    [created] = twilio.messages
    assert result.status == "sent"
    assert result.provider_message_id == created["sid"] and created["sid"].startswith("SM")
    request = created["_request"]
    assert request["From"] == SMS_NUMBER
    assert request["To"] == CUSTOMER
    assert request["Body"] == "Your refund is on its way."
    assert request["StatusCallback"] == PUBLIC + "/channels/sms/twilio/status"


async def test_messaging_service_and_media_urls(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    from connectors.base import Attachment

    service = "MG" + "c" * 32
    connector, _ = await make_channel(from_number=None, messaging_service_sid=service)
    att = Attachment("label.pdf", "application/pdf", 10, url="https://files.example.com/l.pdf")
    result = await connector.send(out("Your return label", attachments=[att]))
    assert result.status == "sent"
    request = twilio.messages[0]["_request"]
    assert request["MessagingServiceSid"] == service and "From" not in request
    assert request["MediaUrl"] == "https://files.example.com/l.pdf"


async def test_429_then_500_then_success(twilio: TwilioStandin, make_channel: Factory) -> None:
    connector, _ = await make_channel()
    twilio.fail_next(429, retry_after=7)
    twilio.fail_next(500)
    first, second, third = [await connector.send(out()) for _ in range(3)]
    assert (first.status, first.retry_after) == ("retry", 7.0)
    assert "20429" in (first.reason or "")
    assert second.status == "retry" and "20500" in (second.reason or "")
    assert third.status == "sent" and third.provider_message_id == twilio.messages[0]["sid"]
    assert len(twilio.messages) == 1


async def test_client_errors_fail_with_twilios_code_and_message(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, _ = await make_channel()
    twilio.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    result = await connector.send(out())
    assert result.status == "failed"
    assert result.reason == "twilio error 21610: Attempt to send to unsubscribed recipient"
    # The stand-in checks numbers like Twilio does; ours are checked before calling.
    result = await connector.send(out(to="not a number"))
    assert result.status == "failed" and "E.164" in (result.reason or "")
    assert twilio.messages == []


async def test_wrong_credentials_fail_sends_and_refuse_start(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, _ = await make_channel(auth_token="wrong-token", start=False)
    result = await connector.send(out())
    assert result.status == "failed" and result.reason == "twilio error 20003: Authenticate"
    with pytest.raises(AuthFailed):
        await connector.start()


async def test_twilio_down_means_retry_and_not_ready(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, _ = await make_channel()
    await twilio.stop()
    result = await connector.send(out())
    assert result.status == "retry" and "unreachable" in (result.reason or "")
    with pytest.raises(NotReady):
        await connector.start()
    await twilio.start()
    assert (await connector.send(out())).status == "sent"


async def wa_inbound(twilio: TwilioStandin, gw_url: str, text: str = "hola") -> int:
    params = twilio.inbound_params(
        "whatsapp:" + CUSTOMER, "whatsapp:" + WA_NUMBER, text, profile_name="Ana"
    )
    path = "/channels/wa/twilio/inbound"
    async with aiohttp.ClientSession() as s:
        status, _, _ = await twilio.post_webhook(s, gw_url + path, params, signed_url=PUBLIC + path)
    return status


async def test_whatsapp_free_text_inside_the_window(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, gw = await make_channel("whatsapp", from_number="whatsapp:" + WA_NUMBER)
    assert await wa_inbound(twilio, gw.url) == 200
    result = await connector.send(out("Claro, te ayudo."))
    assert result.status == "sent"
    request = twilio.messages[0]["_request"]
    assert (request["From"], request["To"]) == ("whatsapp:" + WA_NUMBER, "whatsapp:" + CUSTOMER)
    assert request["Body"] == "Claro, te ayudo." and "ContentSid" not in request


async def test_whatsapp_outside_the_window_fails_clearly_without_a_template(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, _ = await make_channel("whatsapp", from_number=WA_NUMBER)
    result = await connector.send(out())
    assert result.status == "failed"
    assert "24-hour" in (result.reason or "") and "63016" in (result.reason or "")
    assert twilio.messages == []


async def test_whatsapp_window_expires_after_24_hours_and_template_is_sent(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    connector, gw = await make_channel(
        "whatsapp", from_number=WA_NUMBER, whatsapp_template=TEMPLATE
    )
    assert isinstance(connector, TwilioWhatsAppConnector)
    assert await wa_inbound(twilio, gw.url) == 200
    assert await connector.window_open(CUSTOMER)
    # The customer wrote 25 hours ago.
    await gw.kv.set("last_inbound:" + CUSTOMER, repr(time.time() - 25 * 3600))
    result = await connector.send(out("We shipped it.", sender_name="Maria"))
    assert result.status == "sent"
    request = twilio.messages[0]["_request"]
    assert request["ContentSid"] == TEMPLATE["content_sid"]
    assert json.loads(request["ContentVariables"]) == {"1": "Maria", "2": "conv-9"}
    assert "Body" not in request
    assert request["To"] == "whatsapp:" + CUSTOMER


def test_settings_are_validated() -> None:
    base = {
        "account_sid": "AC" + "a" * 32,
        "auth_token": "t",
        "from_number": "+1 (415) 523-8886",
    }
    assert TwilioSmsSettings.model_validate(base).from_number == "+14155238886"
    with pytest.raises(ValidationError, match="whatsapp_template"):
        TwilioSmsSettings.model_validate({**base, "whatsapp_template": TEMPLATE})
    with pytest.raises(ValidationError, match="from_number or messaging_service_sid"):
        TwilioSmsSettings.model_validate({**base, "from_number": None})
    with pytest.raises(ValidationError, match=r"E\.164"):
        TwilioSmsSettings.model_validate({**base, "from_number": "12"})
    with pytest.raises(ValidationError, match="content_sid"):
        TwilioWhatsAppSettings.model_validate(
            {**base, "whatsapp_template": {"content_sid": "nope"}}
        )


async def test_whatsapp_survey_outside_the_window_goes_as_its_own_template(
    twilio: TwilioStandin, make_channel: Factory
) -> None:
    """A survey (a `Prompt`) carries the template the core chose for it; the channel's own
    reply template is not used for it."""
    connector, _ = await make_channel("whatsapp", from_number=WA_NUMBER, whatsapp_template=TEMPLATE)
    survey = "HX" + "c" * 32
    prompt = Prompt(
        id="sv_1",
        choices=[Choice(str(n), str(n)) for n in range(1, 6)],
        template={"content_sid": survey, "variables": {"1": "How did we do?"}},
    )
    result = await connector.send(out("How satisfied are you?", prompt=prompt))
    assert result.status == "sent"
    request = twilio.messages[0]["_request"]
    assert request["ContentSid"] == survey
    assert json.loads(request["ContentVariables"]) == {"1": "How did we do?"}
    assert "Body" not in request
