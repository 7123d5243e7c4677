"""The store's role behind the agent workspace (issue 14): the conversation list with its
filters, sorts and keyset pages, the sidebar counts, read markers (unread), tags, priority,
snooze, and full-text search.

The SQL of the list and the counts is built here once, with `?` marks, for both backends
(`Dialect` covers what differs); SQLite: gateway/store/sqlite/inbox.py, PostgreSQL:
gateway/store/postgres/inbox.py.
"""

from __future__ import annotations

import base64
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import iso
from gateway.model import Conversation, Event, NewEvent, priority_name
from gateway.store.base import Scope, Store
from gateway.store.rows import CONV_COLS, Row, conv_row

ACTIVE = ("open", "assigned", "pending")
STATUSES = ("open", "assigned", "pending", "snoozed", "resolved", "closed", "active")

# sort name -> SQL expression of the conversation `c` (each has an index, migration 17)
SORTS: dict[str, str] = {
    "created_at": "c.created_at",
    "last_message_at": "COALESCE(c.last_message_at, c.created_at)",
    "priority": "c.priority",
    "sla_due": "c.sla_due",
}
SORT_NAMES = tuple(f"{sign}{name}" for name in SORTS for sign in ("-", ""))
DEFAULT_SORT = "-created_at"


class BadCursor(ValueError):
    """A cursor this store did not give, or from another sort."""


@dataclass(slots=True)
class ListQuery:
    """One page of the workspace list. `reader`: whose read markers count as read."""

    reader: str
    now: float
    statuses: tuple[str, ...] = ()
    queue: str | None = None
    channel: str | None = None
    contact_id: str | None = None
    tag: str | None = None
    assignee: str | None = None
    unassigned: bool = False
    sla: str | None = None  # breached, warning, ok
    sla_warning: float = 900.0
    waiting: bool | None = None
    unread: bool | None = None
    sort: str = DEFAULT_SORT
    limit: int = 50
    after: tuple[float, str] | None = None
    scope: Scope | None = None


@dataclass(slots=True)
class ConversationItem:
    """A conversation as the workspace lists it."""

    conversation: Conversation
    contact_name: str | None = None
    last_message_at: float | None = None
    snoozed_until: float | None = None
    unread: int = 0
    waiting: bool = False
    sort_value: float = 0.0


@dataclass(slots=True)
class ReadMarker:
    conversation_id: str
    reader: str
    read_at: float
    message_id: str | None


@dataclass(slots=True)
class SearchHit:
    kind: str  # message, contact
    conversation_id: str
    message_id: str | None
    contact_id: str
    snippet: str  # marked with MARK_OPEN / MARK_CLOSE, not yet escaped
    at: float | None
    rank: float = 0.0


@dataclass(slots=True)
class SearchQuery:
    words: list[str]
    limit: int = 20
    offset: int = 0
    scope: Scope | None = None


@dataclass(slots=True)
class Counts:
    views: dict[str, dict[str, int]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)


# Private-use characters around a highlighted word: they survive HTML escaping and are
# replaced by <mark> tags afterwards (gateway/api/inbox.py).
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"

WORD = re.compile(r"\w+", re.UNICODE)


def search_words(q: str, most: int = 16) -> list[str]:
    """The words of a search query (letters and digits; each becomes a prefix term)."""
    return WORD.findall(q)[:most]


def encode_cursor(sort: str, value: float, conv_id: str) -> str:
    raw = json.dumps([sort, value, conv_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, value, conv_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not one this API gave") from exc
    if got_sort != sort:
        raise BadCursor(f"cursor belongs to sort {got_sort!r}, not {sort!r}")
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not isinstance(conv_id, str)
    ):
        raise BadCursor("cursor is not one this API gave")
    return value, conv_id


# --- SQL shared by both backends ----------------------------------------------------------

C_COLS = ", ".join(f"c.{col.strip()}" for col in CONV_COLS.split(","))
_N_CONV = len(CONV_COLS.split(","))


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQLite and PostgreSQL in the workspace SQL."""

    # A condition: the conversation `c` has the tag `?`.
    has_tag: str
    false: str


SQLITE = Dialect(
    has_tag="EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE t.value = ?)",
    false="0",
)
POSTGRES = Dialect(has_tag="c.tags::jsonb @> jsonb_build_array(?::text)", false="FALSE")

# The inbound messages after the reader's marker (`?` = reader).
_UNREAD = (
    "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'in'"
    " AND m.created_at > COALESCE((SELECT r.read_at FROM read_markers r"
    " WHERE r.reader = ? AND r.conversation_id = c.id), -1))"
)
# The customer waits: active, and no agent message since its last one.
_WAITING = (
    "(CASE WHEN c.status IN ('open','assigned','pending') AND c.last_inbound_at IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
    " AND m.direction = 'out' AND m.sender_type = 'agent' AND m.created_at >= c.last_inbound_at)"
    " THEN 1 ELSE 0 END)"
)
# A snooze counts while the conversation is still pending and the customer has not
# written since it was set (a customer message wakes it: gateway/domain/workspace.py).
SNOOZE_JOIN = (
    " LEFT JOIN snoozes s ON s.conversation_id = c.id AND c.status = 'pending'"
    " AND COALESCE(c.last_inbound_at, 0) <= s.at"
)


def _scope_clause(scope: Scope | None, dialect: Dialect) -> tuple[str, list[Any]]:
    if scope is None:
        return "", []
    clause, args = scope.where("c.queue", "c.assignee")
    if clause == "(0)":
        return dialect.false, []
    return clause, list(args)


def list_sql(q: ListQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """The SQL of one page (`limit + 1` rows, to know whether there is another). The page
    is chosen first (ids and sort keys only), then its rows get their contact, unread count
    and waiting state: those are computed for the page, not for every row sorted."""
    desc = q.sort.startswith("-")
    expr = SORTS[q.sort.lstrip("-")]
    args: list[Any] = []
    select = f"SELECT c.id AS pid, {expr} AS sort_value FROM conversations c" + (
        SNOOZE_JOIN if "snoozed" in q.statuses else ""
    )
    where: list[str] = []
    statuses = set(q.statuses)
    if statuses:
        parts: list[str] = []
        plain = sorted(
            (statuses - {"active", "snoozed"}) | (set(ACTIVE) if "active" in statuses else set())
        )
        if plain:
            parts.append(f"c.status IN ({','.join('?' * len(plain))})")
            args.extend(plain)
        if "snoozed" in statuses:
            parts.append("s.until IS NOT NULL")
        where.append("(" + " OR ".join(parts) + ")")
    for col, value in (
        ("c.queue", q.queue),
        ("c.last_channel", q.channel),
        ("c.contact_id", q.contact_id),
        ("c.assignee", q.assignee),
    ):
        if value is not None:
            where.append(f"{col} = ?")
            args.append(value)
    if q.unassigned:
        where.append("c.assignee IS NULL")
    if q.tag is not None:
        where.append(dialect.has_tag)
        args.append(q.tag)
    if q.sla == "breached":
        where.append("c.sla_due <= ?")
        args.append(q.now)
    elif q.sla == "warning":
        where.append("c.sla_due > ? AND c.sla_due <= ?")
        args.extend([q.now, q.now + q.sla_warning])
    elif q.sla == "ok":
        where.append("c.sla_due > ?")
        args.append(q.now + q.sla_warning)
    if q.waiting is not None:
        where.append(f"{_WAITING} = {1 if q.waiting else 0}")
    if q.unread is not None:
        where.append(f"{_UNREAD} {'>' if q.unread else '='} 0")
        args.append(q.reader)
    clause, scope_args = _scope_clause(q.scope, dialect)
    if clause:
        where.append(clause)
        args.extend(scope_args)
    if q.after is not None:
        where.append(f"({expr}, c.id) {'<' if desc else '>'} (?, ?)")
        args.extend(q.after)
    inner = select
    if where:
        inner += " WHERE " + " AND ".join(where)
    order = "DESC" if desc else "ASC"
    inner += f" ORDER BY {expr} {order}, c.id {order} LIMIT ?"
    args.append(q.limit + 1)
    sql = (
        f"SELECT {C_COLS}, ct.name, c.last_message_at, s.until, {_UNREAD} AS unread,"
        f" {_WAITING} AS waiting, p.sort_value"
        f" FROM ({inner}) p JOIN conversations c ON c.id = p.pid"
        " LEFT JOIN contacts ct ON ct.id = c.contact_id"
        + SNOOZE_JOIN
        + f" ORDER BY p.sort_value {order}, p.pid {order}"
    )
    return sql, [q.reader, *args]


def item_sql(ids: list[str], reader: str) -> tuple[str, list[Any]]:
    """The list items of some conversations (rendering one after an action, search hits)."""
    sql = (
        f"SELECT {C_COLS}, ct.name, c.last_message_at, s.until, {_UNREAD} AS unread,"
        f" {_WAITING} AS waiting, c.created_at"
        " FROM conversations c LEFT JOIN contacts ct ON ct.id = c.contact_id" + SNOOZE_JOIN
    )
    sql += f" WHERE c.id IN ({','.join('?' * len(ids))})"
    return sql, [reader, *ids]


def item_row(row: Row) -> ConversationItem:
    n = _N_CONV
    return ConversationItem(
        conversation=conv_row(row),
        contact_name=row[n],
        last_message_at=row[n + 1],
        snoozed_until=row[n + 2],
        unread=int(row[n + 3]),
        waiting=bool(row[n + 4]),
        sort_value=row[n + 5],
    )


def counts_sql(
    reader: str, agent: str | None, scope: Scope | None, dialect: Dialect
) -> tuple[str, list[Any]]:
    """One row: mine, unassigned, all (totals and unread), then the count per status."""
    active = "c.status IN ('open','assigned','pending')"
    unread = f"(CASE WHEN {active} AND {_UNREAD} > 0 THEN 1 ELSE 0 END)"
    mine = f"({active} AND c.assignee = ?)" if agent is not None else dialect.false
    unassigned = "(c.status = 'open' AND c.assignee IS NULL)"
    inner_args: list[Any] = [reader]
    if agent is not None:
        inner_args.append(agent)
    inner = (
        f"SELECT c.status, {unread} AS unread,"
        f" CASE WHEN {mine} THEN 1 ELSE 0 END AS mine,"
        f" CASE WHEN {unassigned} THEN 1 ELSE 0 END AS unassigned,"
        f" CASE WHEN {active} THEN 1 ELSE 0 END AS active,"
        " CASE WHEN s.until IS NOT NULL THEN 1 ELSE 0 END AS snoozed"
        " FROM conversations c" + SNOOZE_JOIN
    )
    clause, scope_args = _scope_clause(scope, dialect)
    if clause:
        inner += " WHERE " + clause
        inner_args.extend(scope_args)
    sums = [
        "mine",
        "mine * unread",
        "unassigned",
        "unassigned * unread",
        "active",
        "active * unread",
        "snoozed",
    ] + [
        f"CASE WHEN status = '{s}' THEN 1 ELSE 0 END"
        for s in ("open", "assigned", "pending", "resolved", "closed")
    ]
    sql = "SELECT " + ", ".join(f"COALESCE(SUM({e}), 0)" for e in sums) + f" FROM ({inner}) x"
    return sql, inner_args


def counts_row(row: Row) -> Counts:
    v = [int(row[i]) for i in range(12)]
    return Counts(
        views={
            "mine": {"total": v[0], "unread": v[1]},
            "unassigned": {"total": v[2], "unread": v[3]},
            "all": {"total": v[4], "unread": v[5]},
        },
        status={
            "open": v[7],
            "assigned": v[8],
            "pending": v[9],
            "snoozed": v[6],
            "resolved": v[10],
            "closed": v[11],
        },
    )


# --- events, the same on both backends ------------------------------------------------


def read_event(marker: ReadMarker) -> NewEvent:
    return NewEvent(
        "conversation.read",
        {
            "conversation_id": marker.conversation_id,
            "reader": marker.reader,
            "message_id": marker.message_id,
            "read_at": iso(marker.read_at),
        },
    )


def tag_event(conv: Conversation, added: list[str], removed: list[str], by: str | None) -> NewEvent:
    return NewEvent(
        "conversation.tagged",
        {
            "conversation_id": conv.id,
            "added": added,
            "removed": removed,
            "tags": list(conv.tags),
            "by": by,
        },
    )


def priority_event(conv: Conversation, previous: int, by: str | None) -> NewEvent:
    return NewEvent(
        "conversation.priority_changed",
        {
            "conversation_id": conv.id,
            "priority": priority_name(conv.priority),
            "previous": priority_name(previous),
            "by": by,
        },
    )


def wake_event(conv: Conversation, reason: str, by: str | None) -> NewEvent:
    return NewEvent(
        "conversation.woken",
        {"conversation_id": conv.id, "reason": reason, "by": by, "conversation": conv.to_api()},
    )


class InboxStore(ABC):
    """The agent workspace's reads and changes. Every change is atomic with its event."""

    @abstractmethod
    async def ws_list(self, query: ListQuery) -> list[ConversationItem]:
        """Up to `query.limit + 1` items in the query's order after its keyset position."""

    @abstractmethod
    async def ws_items(self, ids: list[str], reader: str) -> dict[str, ConversationItem]: ...

    @abstractmethod
    async def ws_counts(self, reader: str, agent: str | None, scope: Scope | None) -> Counts: ...

    @abstractmethod
    async def ws_mark_read(
        self,
        conversation_id: str,
        reader: str,
        message_id: str | None,
        scope: Scope | None,
        now: float,
    ) -> tuple[ReadMarker, list[Event]]:
        """Move the reader's marker to the message (default: the latest); never back."""

    @abstractmethod
    async def ws_tags(
        self,
        conversation_id: str,
        add: list[str],
        remove: list[str],
        by: str | None,
        scope: Scope | None,
        now: float,
    ) -> tuple[Conversation, list[Event]]: ...

    @abstractmethod
    async def ws_priority(
        self, conversation_id: str, priority: int, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]: ...

    @abstractmethod
    async def ws_snooze(
        self, conversation_id: str, until: float, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]: ...

    @abstractmethod
    async def ws_wake(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        """End a snooze by hand (Conflict when it is not snoozed)."""

    @abstractmethod
    async def ws_snooze_next_due(self) -> float | None:
        """The earliest snooze end; `-inf` when a snooze ended early (a customer wrote)."""

    @abstractmethod
    async def ws_snooze_fire(self, now: float) -> list[Event]:
        """Wake what is due, and settle snoozes a customer message ended (once each)."""

    @abstractmethod
    async def ws_search(self, query: SearchQuery) -> list[SearchHit]:
        """Up to `limit + 1` hits from `offset`, best first."""


def inbox_store(store: Store) -> InboxStore:
    if not isinstance(store, InboxStore):
        raise TypeError(f"{type(store).__name__} has no inbox role")
    return store
