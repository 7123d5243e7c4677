"""`SqliteStore`: every role of the store on one SQLite file, composed of one mixin per
role. A feature's own store code is a mixin too (`gateway/store/sqlite/<feature>.py`,
built on `_tx`, `_run` and `_events`): add it to the bases here."""

from __future__ import annotations

from gateway.store.base import PortalStore, Store
from gateway.store.sqlite.blobs import SqliteBlobs
from gateway.store.sqlite.contacts import SqliteContacts
from gateway.store.sqlite.conversations import SqliteConversations
from gateway.store.sqlite.escalation import SqliteEscalation
from gateway.store.sqlite.eventlog import SqliteEventLog
from gateway.store.sqlite.inbox import SqliteInbox
from gateway.store.sqlite.kb import SqliteKb
from gateway.store.sqlite.kv import SqliteKeyValue
from gateway.store.sqlite.leases import SqliteLeases
from gateway.store.sqlite.outbox import SqliteOutbox
from gateway.store.sqlite.quarantine import SqliteQuarantine
from gateway.store.sqlite.routing import SqliteRouting
from gateway.store.sqlite.stats import SqliteStats
from gateway.store.sqlite.surveys import SqliteSurveys
from gateway.store.sqlite.timekeeping import SqliteTime
from gateway.store.sqlite.workspace import SqliteWorkspace


class SqliteStore(
    SqliteInbox,
    SqliteConversations,
    SqliteContacts,
    SqliteOutbox,
    SqliteRouting,
    SqliteEventLog,
    SqliteKeyValue,
    SqliteLeases,
    SqliteBlobs,
    SqliteQuarantine,
    SqliteTime,
    SqliteEscalation,
    SqliteStats,
    SqliteWorkspace,
    SqliteSurveys,
    SqliteKb,
    PortalStore,
    Store,
):
    """The embedded store: SQLite in WAL mode, one connection on a thread of its own."""
