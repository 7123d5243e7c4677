"""Connector-contributed commands: the CLI finds them through the connector registry."""

from __future__ import annotations

import argparse
from typing import ClassVar

import pytest

from connectors.base import (
    CliCommand,
    CliHost,
    Connector,
    ConnectorSettings,
    DeliveryResult,
    OutboundMessage,
)
from gateway import cli
from gateway.registry import ConnectorRegistry

CALLS: list[tuple[str, str]] = []


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flag", required=True)


def _run(args: argparse.Namespace, host: CliHost) -> int:
    CALLS.append((args.flag, args.config))
    return 7


class ToolConnector(Connector):
    kind: ClassVar[str] = "tooly"
    identity_kind: ClassVar[str] = "tooly"
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings

    @classmethod
    def cli_commands(cls) -> list[CliCommand]:
        return [CliCommand("tooly", "tooly tools", "poke", "poke the provider", _arguments, _run)]

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        return DeliveryResult.sent()


def test_a_third_party_connector_adds_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ConnectorRegistry(
        {"tooly": f"{__name__}:ToolConnector", "broken": "no.such.module:Nothing"}
    )
    monkeypatch.setattr(cli, "default_registry", lambda: registry)
    CALLS.clear()
    assert cli.main(["tooly", "poke", "--flag", "x", "-c", "some.yaml"]) == 7
    assert CALLS == [("x", "some.yaml")]


def test_email_backfill_is_contributed_by_the_email_connector() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["email", "backfill", "--help"])
    assert exc.value.code == 0
