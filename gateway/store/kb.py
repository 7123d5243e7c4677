"""The store's part in the knowledge base (issue 15): what the widget's article
suggestions did — shown, an article opened, "did this answer your question?" answered —
appended to the event log (`kb.suggestion.*`), where the KPIs can count the self-service
rate. A role of its own, implemented per store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from gateway.model import Event

SUGGESTION_EVENTS = ("shown", "clicked", "answered")


class KbStore(ABC):
    @abstractmethod
    async def kb_record(self, event: str, data: dict[str, Any], now: float) -> list[Event]:
        """Append `kb.suggestion.<event>` with `data`; returns the committed event."""


def kb_store(store: object) -> KbStore:
    if not isinstance(store, KbStore):
        raise TypeError(f"{type(store).__name__} keeps no knowledge-base records")
    return store
