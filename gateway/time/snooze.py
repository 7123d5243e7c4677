"""Snoozed conversations wake (issue 14): a deadline source (gateway/time/deadlines.py)
whose due time is the earliest snooze end kept by the store, so a restart wakes whatever
fell due while the process was down."""

from __future__ import annotations

from gateway.services import Services
from gateway.store.inbox import inbox_store


class SnoozeSource:
    """Wakes snoozed conversations when their time comes (`conversation.woken`, reason
    `timer`), and settles those a customer message woke earlier (reason `customer`)."""

    name = "snooze"
    # A snooze set (a new due time), a customer message (may end one early).
    wake_on = frozenset({"conversation.snoozed", "message.received"})

    def __init__(self, services: Services) -> None:
        self.services = services

    async def next_due(self, now: float) -> float | None:
        return await inbox_store(self.services.store).ws_snooze_next_due()

    async def fire(self, now: float) -> None:
        events = await inbox_store(self.services.store).ws_snooze_fire(now)
        self.services.committed(events)
        if any(e.data.get("reason") == "timer" for e in events):
            self.services.wake_routing()
