"""Stores: the durable state behind one interface (`Store`)."""

from gateway.store.base import Conflict, NotFound, Store, StoreError
from gateway.store.sqlite import SqliteStore

__all__ = ["Conflict", "NotFound", "SqliteStore", "Store", "StoreError"]
