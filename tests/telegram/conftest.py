from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.telegram import TelegramConnector, TelegramSettings
from tests.standins.context import PUBLIC_URL, ChannelFactory, FakeGateway
from tests.standins.telegram import WEBHOOK_SECRET, TelegramStandin


@pytest.fixture
async def make_bot(telegram: TelegramStandin) -> AsyncIterator[ChannelFactory]:
    """Build (and by default start) a Telegram channel on a FakeGateway."""
    made: list[tuple[TelegramConnector, FakeGateway, bool]] = []

    async def factory(
        *,
        gateway: FakeGateway | None = None,
        start: bool = True,
        max_body_bytes: int = 1 << 20,
        **overrides: Any,
    ) -> tuple[TelegramConnector, FakeGateway]:
        own = gateway is None
        gw = gateway or FakeGateway(public_url=PUBLIC_URL, max_body_bytes=max_body_bytes)
        values: dict[str, Any] = {
            "token": telegram.token,
            "api_base_url": telegram.url,
            "poll_timeout": 1,
            "request_timeout": 3,
        }
        values.update(overrides)
        if values.get("mode") == "webhook":
            values.setdefault("webhook_secret", WEBHOOK_SECRET)
        connector = TelegramConnector("tg", TelegramSettings.model_validate(values), gw.ctx)
        connector.retry_initial = 0.2
        made.append((connector, gw, own))
        if start:
            if own:
                await gw.start()
            await connector.start()
        return connector, gw

    yield factory
    for connector, gw, own in made:
        await connector.stop()
        if own:
            await gw.close()
