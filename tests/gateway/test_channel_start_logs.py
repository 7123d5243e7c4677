"""A channel that cannot start says why in the log: once at warning per distinct reason
(not at every retry), one line, without a credential a URL in the reason may carry."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from connectors.api.connector import ApiConnector
from connectors.base import AuthFailed, NotReady
from gateway import app
from tests.gateway.conftest import base_config, gateway_factory, wait_for

__all__ = ["gateway_factory"]

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
DOWN = f"provider not reachable:\n404, url='https://api.example.org/bot{TOKEN}/getMe'"
SHOWN_DOWN = "provider not reachable: 404, url='https://api.example.org/…/…'"


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def test_a_channel_not_ready_logs_each_reason_once(
    gateway_factory: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes: list[Exception | None] = [
        NotReady(DOWN),
        NotReady(DOWN),
        NotReady(DOWN),
        NotReady("DNS lookup failed"),
        None,
    ]

    async def start(self: ApiConnector) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(ApiConnector, "start", start)
    monkeypatch.setattr(app, "CHANNEL_RETRY_FIRST", 0.01)
    caplog.set_level(logging.INFO)
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    await wait_for(lambda: not outcomes)

    warned = records(caplog, "channel not ready; retrying")
    assert [(r.levelno, r.__dict__.get("reason")) for r in warned] == [
        (logging.WARNING, SHOWN_DOWN),
        (logging.WARNING, "DNS lookup failed"),
    ]
    await wait_for(lambda: records(caplog, "channel ready after retrying"))
    status, body = await client.call("GET", "/readyz", token=None)
    assert (status, body["channels"]["api"]) == (200, "running")
    assert not any(TOKEN in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


async def test_a_refused_login_logs_its_reason_and_readyz_shows_it_redacted(
    gateway_factory: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def start(self: ApiConnector) -> None:
        raise AuthFailed(f"the provider refused the token: {DOWN}")

    monkeypatch.setattr(ApiConnector, "start", start)
    caplog.set_level(logging.INFO)
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    [failed] = await wait_for(lambda: records(caplog, "channel stopped: authentication failed"))
    assert failed.levelno == logging.ERROR
    assert failed.__dict__["reason"] == f"the provider refused the token: {SHOWN_DOWN}"
    status, body = await client.call("GET", "/readyz", token=None)
    assert status == 503
    assert body["channels"]["api"] == f"auth_failed: the provider refused the token: {SHOWN_DOWN}"
