"""Which events of the log a principal may see on the stream.

Admins see everything. An integration (a helpdesk beside the gateway) sees every
conversation but not the quarantine, which is an admin's business. An agent sees the events
of conversations its scope sees *now* (so a conversation transferred out of its queues
goes quiet), its colleagues' presence and capacity, and nothing about contacts by
themselves or the quarantine.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from gateway.model import Event
from gateway.store.base import NotFound, Store

if TYPE_CHECKING:
    from gateway.api.auth import Principal

ADMIN_ONLY = ("message.quarantined", "quarantine.")
# Live-only conversation events that change nobody's view of the conversation.
LIVE_ONLY = ("conversation.typing", "conversation.viewing")


def conversation_of(event: Event) -> str | None:
    data: dict[str, Any] = event.data
    conv_id = data.get("conversation_id")
    if isinstance(conv_id, str):
        return conv_id
    conv = data.get("conversation")
    if isinstance(conv, dict) and isinstance(conv.get("id"), str):
        return str(conv["id"])
    return None


class StreamFilter:
    def __init__(self, store: Store, principal: Principal, cache_size: int = 10_000) -> None:
        self.store = store
        self.principal = principal
        self.cache_size = cache_size
        # conversation id -> seen by the scope, as of the last event that could change it
        self._seen: OrderedDict[str, bool] = OrderedDict()

    async def allows(self, event: Event) -> bool:
        if event.type.startswith(ADMIN_ONLY):
            return self.principal.role == "admin"
        scope = self.principal.scope
        if scope is None:
            return True
        if event.type.startswith("agent."):
            return True
        conv_id = conversation_of(event)
        if conv_id is None:
            return False  # contact.* and anything not tied to a conversation
        if event.type.startswith("conversation.") and event.type not in LIVE_ONLY:
            self._seen.pop(conv_id, None)  # assignment, transfer, reopen: look again
        seen = self._seen.get(conv_id)
        if seen is None:
            try:
                await self.store.get_conversation(conv_id, scope)
                seen = True
            except NotFound:
                seen = False
            self._seen[conv_id] = seen
            while len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(conv_id)
        return seen
