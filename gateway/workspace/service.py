"""The workspace's changes on the one commit path: the store commits them with their
events, then the committed events are published (gateway/services.py, rule 1)."""

from __future__ import annotations

from typing import Any

from connectors.base import Identity
from gateway.model import Contact
from gateway.services import Services
from gateway.store.base import Scope
from gateway.store.workspace import CannedReply, ContactMerge, Note, Split, workspace_store


class WorkspaceService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = workspace_store(services.store)

    async def note(
        self,
        conversation_id: str,
        sender_id: str | None,
        text: str,
        mentions: list[str],
        scope: Scope | None = None,
        attachments: list[dict[str, Any]] | None = None,
        blobs: dict[str, tuple[str, bytes]] | None = None,
    ) -> Note:
        note, events = await self.store.note_add(
            conversation_id,
            "agent",
            sender_id,
            text,
            mentions,
            self.services.clock(),
            scope,
            attachments,
            blobs,
        )
        self.services.committed(events)
        return note

    async def canned_put(self, reply: CannedReply) -> CannedReply:
        return await self.store.canned_put(reply, self.services.clock())

    async def merge(self, target: str, source: str, by: str | None) -> ContactMerge:
        merge, events = await self.store.contact_merge(target, source, by, self.services.clock())
        self.services.committed(events)
        return merge

    async def undo_merge(self, target: str, merge_id: str) -> ContactMerge:
        merge, events = await self.store.contact_merge_undo(target, merge_id, self.services.clock())
        self.services.committed(events)
        return merge

    async def split(self, contact_id: str, identity: Identity) -> Split:
        split, events = await self.store.contact_split(contact_id, identity, self.services.clock())
        self.services.committed(events)
        return split

    async def rename(self, contact_id: str, name: str | None) -> Contact:
        contact, events = await self.store.contact_rename(contact_id, name, self.services.clock())
        self.services.committed(events)
        return contact
