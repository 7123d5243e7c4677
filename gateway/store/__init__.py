"""Stores: the durable state behind one interface (`Store`), split by role."""

from gateway.store.base import (
    BlobStore,
    Conflict,
    ConversationStore,
    EventLogStore,
    KeyValueStore,
    NotFound,
    OutboxStore,
    QuarantineStore,
    RoutingStore,
    Store,
    StoreError,
)
from gateway.store.sqlite import SqliteStore

__all__ = [
    "BlobStore",
    "Conflict",
    "ConversationStore",
    "EventLogStore",
    "KeyValueStore",
    "NotFound",
    "OutboxStore",
    "QuarantineStore",
    "RoutingStore",
    "SqliteStore",
    "Store",
    "StoreError",
]
