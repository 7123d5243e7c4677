"""A Twilio SMS webhook whose body holds a NUL (U+0000) is answered 200 and stored without
it on both stores (on PostgreSQL the webhook failed, a 5xx, so Twilio retried and gave up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.gateway.conftest import gateway_factory, wait_for
from tests.standins.twilio import CUSTOMER_NUMBER, TwilioStandin
from tests.twilio.test_twilio_gateway import EMPTY_TWIML, post_sms, twilio_config

__all__ = ["gateway_factory"]


async def test_an_sms_with_a_nul_is_stored_without_it(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, store_block: dict[str, Any]
) -> None:
    cfg, _ = twilio_config(tmp_path, twilio)
    cfg["store"] = store_block
    _, client = await gateway_factory(cfg)
    status, _, text, _ = await post_sms(client, twilio, "charged\x00 twice")
    assert (status, text) == (200, EMPTY_TWIML)
    convs = await wait_for(lambda: client.conversations_of(f"phone:{CUSTOMER_NUMBER}"))
    [inbound] = (await client.conversation(convs[0]["id"]))["messages"]
    assert inbound["text"] == "charged twice"
