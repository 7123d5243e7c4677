"""A webhook URL often carries its credential (a path or `?token=` the receiver gave, as
Slack's and Zapier's do, or `user:password@`): the log names the endpoint without it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import SECRET, base_config, gateway_factory, wait_for

__all__ = ["gateway_factory"]

URL = "http://hook-user:PassW0rd@127.0.0.1:9/hooks/catch?token=QueryS3cret"


async def test_a_failing_webhook_is_logged_without_its_credentials(
    gateway_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [{"url": URL, "secret": SECRET, "allow_private_networks": True}]
    _, client = await gateway_factory(cfg)
    caplog.set_level(logging.INFO)
    status, _ = await client.inbound("w1", "hello")
    assert status == 202

    def failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "switchboard.webhooks"]

    records = await wait_for(failures)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert "127.0.0.1:9" in logged  # the endpoint is named ...
    assert "QueryS3cret" not in logged and "PassW0rd" not in logged  # ... not its secrets
