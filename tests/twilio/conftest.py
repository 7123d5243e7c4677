from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.twilio import (
    TwilioConnector,
    TwilioSmsConnector,
    TwilioSmsSettings,
    TwilioWhatsAppConnector,
    TwilioWhatsAppSettings,
)
from tests.standins.context import PUBLIC_URL, ChannelFactory, FakeGateway
from tests.standins.twilio import CHANNEL_NUMBER, TwilioStandin


@pytest.fixture
async def make_channel(twilio: TwilioStandin) -> AsyncIterator[ChannelFactory]:
    """Build a started SMS or WhatsApp channel on a FakeGateway serving its webhooks."""
    gateways: list[FakeGateway] = []

    async def factory(
        kind: str = "sms",
        *,
        name: str | None = None,
        gateway: FakeGateway | None = None,
        public_url: str = PUBLIC_URL,
        max_body_bytes: int = 1 << 20,
        start: bool = True,
        **overrides: Any,
    ) -> tuple[TwilioConnector, FakeGateway]:
        if gateway is None:
            gateway = FakeGateway(public_url=public_url, max_body_bytes=max_body_bytes)
            gateways.append(gateway)
        values: dict[str, Any] = {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": CHANNEL_NUMBER,
            "api_base_url": twilio.url,
            "request_timeout": 3,
        }
        values.update(overrides)
        connector: TwilioConnector
        if kind == "sms":
            connector = TwilioSmsConnector(
                name or "sms", TwilioSmsSettings.model_validate(values), gateway.ctx
            )
        else:
            connector = TwilioWhatsAppConnector(
                name or "wa", TwilioWhatsAppSettings.model_validate(values), gateway.ctx
            )
        if start:
            await gateway.start()
            await connector.start()
        return connector, gateway

    yield factory
    for gateway in gateways:
        await gateway.close()
