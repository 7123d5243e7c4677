"""Finding connector classes: the `switchboard.connectors` entry-point group.

Third parties add a channel kind by declaring an entry point in that group; nothing in
the core changes. Built-in kinds are listed too, so a source checkout works uninstalled.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from connectors.base import Connector

ENTRY_POINT_GROUP = "switchboard.connectors"

BUILTIN: dict[str, str] = {
    "api": "connectors.api:ApiConnector",
    "webchat": "connectors.webchat:WebchatConnector",
    "email": "connectors.email:EmailConnector",
    "twilio_sms": "connectors.twilio:TwilioSmsConnector",
    "twilio_whatsapp": "connectors.twilio:TwilioWhatsAppConnector",
    "telegram": "connectors.telegram:TelegramConnector",
}


class UnknownConnector(LookupError):
    pass


class ConnectorRegistry:
    def __init__(self, targets: dict[str, str] | None = None) -> None:
        self._targets = dict(BUILTIN)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            self._targets[ep.name] = ep.value
        if targets:
            self._targets.update(targets)
        self._loaded: dict[str, type[Connector]] = {}

    def kinds(self) -> list[str]:
        return sorted(self._targets)

    def get(self, kind: str) -> type[Connector]:
        if kind in self._loaded:
            return self._loaded[kind]
        target = self._targets.get(kind)
        if target is None:
            raise UnknownConnector(
                f"unknown channel type {kind!r}; known types: {', '.join(self.kinds())}"
            )
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownConnector(f"channel type {kind!r} cannot be loaded: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise UnknownConnector(f"channel type {kind!r} is not a Connector: {target}")
        self._loaded[kind] = cls
        return cls


_DEFAULT: ConnectorRegistry | None = None


def default_registry() -> ConnectorRegistry:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ConnectorRegistry()
    return _DEFAULT
