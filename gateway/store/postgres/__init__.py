"""The PostgreSQL store: one module per role, composed by `PostgresStore`."""

from gateway.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
