"""The agent workspace's changes (issue 14), on the one commit path: the store commits
the change with its event, `Services.committed` publishes it, routing is woken when a
conversation waits again. Snoozed conversations wake in gateway/time/snooze.py."""

from __future__ import annotations

from gateway.model import Conversation, Event
from gateway.services import Services
from gateway.store.base import Scope
from gateway.store.inbox import InboxStore, ReadMarker, inbox_store


class Inbox:
    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def store(self) -> InboxStore:
        return inbox_store(self.services.store)

    def _done(self, conv: Conversation, events: list[Event]) -> Conversation:
        self.services.committed(events)
        if conv.status == "open" and conv.assignee is None:
            self.services.wake_routing()
        return conv

    async def mark_read(
        self, conversation_id: str, reader: str, message_id: str | None, scope: Scope | None
    ) -> ReadMarker:
        marker, events = await self.store.ws_mark_read(
            conversation_id, reader, message_id, scope, self.services.clock()
        )
        self.services.committed(events)
        return marker

    async def tags(
        self,
        conversation_id: str,
        add: list[str],
        remove: list[str],
        by: str | None,
        scope: Scope | None,
    ) -> Conversation:
        conv, events = await self.store.ws_tags(
            conversation_id, add, remove, by, scope, self.services.clock()
        )
        self.services.committed(events)
        return conv

    async def priority(
        self, conversation_id: str, priority: int, by: str | None, scope: Scope | None
    ) -> Conversation:
        conv, events = await self.store.ws_priority(
            conversation_id, priority, by, scope, self.services.clock()
        )
        return self._done(conv, events)  # a waiting one is routed in its new order

    async def snooze(
        self, conversation_id: str, until: float, by: str | None, scope: Scope | None
    ) -> Conversation:
        conv, events = await self.store.ws_snooze(
            conversation_id, until, by, scope, self.services.clock()
        )
        self.services.committed(events)
        return conv

    async def wake(self, conversation_id: str, by: str | None, scope: Scope | None) -> Conversation:
        conv, events = await self.store.ws_wake(conversation_id, by, scope, self.services.clock())
        return self._done(conv, events)
