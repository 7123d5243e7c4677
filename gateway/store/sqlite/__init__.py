"""The embedded store: SQLite, one module per role (see `store.py`)."""

from gateway.store.sqlite.connection import SqliteBase
from gateway.store.sqlite.store import SqliteStore

__all__ = ["SqliteBase", "SqliteStore"]
