"""`PostgresStore`: the store on PostgreSQL, composed of one module per role, each
implementing its role protocol of gateway/store/base.py."""

from __future__ import annotations

from gateway.store.base import PortalStore, Store
from gateway.store.postgres.blobs import PgBlobs
from gateway.store.postgres.contacts import PgContacts
from gateway.store.postgres.conversations import PgConversations
from gateway.store.postgres.escalation import PgEscalation
from gateway.store.postgres.eventlog import PgEventLog
from gateway.store.postgres.inbox import PgInbox
from gateway.store.postgres.kb import PgKb
from gateway.store.postgres.kv import PgKv
from gateway.store.postgres.leases import PgLeases
from gateway.store.postgres.outbox import PgOutbox
from gateway.store.postgres.quarantine import PgQuarantine
from gateway.store.postgres.routing import PgRouting
from gateway.store.postgres.stats import PgStats
from gateway.store.postgres.surveys import PgSurveys
from gateway.store.postgres.time import PgTime
from gateway.store.postgres.workspace import PgWorkspace


class PostgresStore(
    PgInbox,
    PgConversations,
    PgContacts,
    PgOutbox,
    PgRouting,
    PgEscalation,
    PgEventLog,
    PgKv,
    PgLeases,
    PgBlobs,
    PgQuarantine,
    PgStats,
    PgSurveys,
    PgTime,
    PgWorkspace,
    PgKb,
    PortalStore,
    Store,
):
    """Durable state in PostgreSQL (asyncpg): several gateway instances may share one
    database. `dsn`: postgresql://user:password@host:port/database; `instance`: what this
    store object records as the holder of the outbox items it leases."""
