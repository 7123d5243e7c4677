"""The knowledge-base bot on SMS (through the Twilio stand-in), in English and German."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import Client, gateway_factory, wait_for
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, TwilioStandin
from tests.twilio.test_twilio_gateway import SMS_INBOUND, post_sms, twilio_config

__all__ = ["gateway_factory"]

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"


async def start(gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin) -> Client:
    cfg, _ = twilio_config(tmp_path, twilio)
    cfg["knowledge_base"] = {"path": str(DEMO_KB)}
    cfg["routing"]["rules"].insert(
        0,
        {
            "name": "sms-self-service",
            "when": {"channel": "sms"},
            "then": {"queue": "general"},
            "bot": "knowledge_base",
        },
    )
    client: Client
    _, client = await gateway_factory(cfg)
    return client


async def test_sms_questions_get_articles_in_the_customers_language(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    status, _, _, _ = await post_sms(client, twilio, "How long does shipping take to Austria?")
    assert status == 200
    await wait_for(lambda: twilio.messages, timeout=10)
    sent = twilio.messages[0]["_request"]
    assert sent["To"] == CUSTOMER_NUMBER
    assert sent["Body"].startswith("Shipping times and delivery")
    assert 'Reply "agent"' in sent["Body"]
    (conv,) = await client.conversations_of(f"phone:{CUSTOMER_NUMBER}")
    assert conv["status"] == "resolved" and conv["assignee"] is None
    first_id = conv["id"]

    # A German customer: the answer is German.
    german = "+4915112345678"
    params = twilio.inbound_params(german, CHANNEL_NUMBER, "Wie kann ich mein Abo kündigen?")
    status, _, _ = await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params)
    assert status == 200

    async def two() -> list[dict[str, Any]] | None:
        return twilio.messages if len(twilio.messages) >= 2 else None

    await wait_for(two, timeout=10)
    sent = twilio.messages[1]["_request"]
    assert sent["To"] == german and sent["Body"].startswith("Abonnement kündigen")
    assert "„Mensch“" in sent["Body"]

    # The English customer wants a person: the conversation reopens for an agent.
    await post_sms(client, twilio, "agent")

    async def assigned() -> dict[str, Any] | None:
        (c,) = await client.conversations_of(f"phone:{CUSTOMER_NUMBER}")
        return c if c["assignee"] else None

    conv = await wait_for(assigned, timeout=10)
    assert conv["queue"] == "general" and conv["id"] == first_id
    assert len(twilio.messages) == 2  # the bot said nothing more
