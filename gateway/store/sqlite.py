"""The embedded store: SQLite in WAL mode through aiosqlite.

aiosqlite runs the connection on its own thread. Each store operation is one synchronous
function handed to that thread as a whole (`_tx`) inside `BEGIN IMMEDIATE … COMMIT`, so an
operation costs one thread hop instead of one per statement, and is atomic against every
other operation — in this process and in any other process using the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from connectors.base import DeliveryResult, Identity
from gateway.ids import new_id
from gateway.model import (
    ACTIVE_STATUSES,
    LOAD_STATUSES,
    AgentState,
    Contact,
    Conversation,
    Event,
    Message,
    NewEvent,
    dumps,
    loads,
)
from gateway.store.base import (
    Claim,
    Conflict,
    ConversationFilter,
    IngestOutcome,
    IngestRequest,
    NotFound,
    OutboundRequest,
    OutboxItem,
    RoutingSnapshot,
    RoutingState,
    Scope,
    Store,
    WaitingConversation,
    WaitingGroup,
    WaitingKey,
    check_acts,
    check_sees,
)
from gateway.store.migrations import MIGRATIONS
from gateway.store.sqlite_quarantine import SqliteQuarantine
from gateway.store.sqlite_surveys import SqliteSurveys

T = TypeVar("T")

_STATUS_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


# JSON columns and event data are encoded and decoded in C (orjson), with the standard
# library's answer for what orjson refuses: see `gateway.model.dumps`.
_dumps = dumps
_loads = loads


class SqliteStore(SqliteQuarantine, SqliteSurveys, Store):
    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous is NORMAL or FULL")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending: list[tuple[IngestRequest, asyncio.Future[IngestOutcome]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batch_limit = 128

    # --- plumbing --------------------------------------------------------------------------
    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        # Statement journals (and the savepoints of a group commit) stay in memory: on disk
        # each message's savepoint wrote ~89 KB to a temp file (bench/temp_writes.py).
        await self._db.execute("PRAGMA temp_store=MEMORY")
        await self._run(self._migrate)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            await self._run(lambda c: c.execute("SELECT 1").fetchone())
        except Exception:
            return False
        return True

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection's thread (no transaction)."""
        db = self._db
        if db is None:
            raise RuntimeError("store is not open")
        # The one use of a private aiosqlite API in the code, kept to this line on purpose.
        # aiosqlite has no public way to run a whole function on its connection's thread
        # (its public API is per statement, one thread hop each); a store operation is many
        # statements and must cost one hop. The public replacement is to own the thread: a
        # single-worker executor holding a plain sqlite3 connection (open/close/_run only).
        return await db._execute(fn, db._conn)  # type: ignore[no-untyped-call,no-any-return]

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` atomically: BEGIN IMMEDIATE, commit on return, roll back on error."""

        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails (disk full, I/O error): never leave the
                # connection inside a transaction, or every later write would fail too.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        async with self._lock:
            return await self._run(wrapped)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for target, script in MIGRATIONS:
            if target <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _events(conn: sqlite3.Connection, now: float, new: list[NewEvent]) -> list[Event]:
        if not new:
            return []
        encoded = [_dumps(ev.data) for ev in new]
        conn.executemany(
            "INSERT INTO events(type, at, data) VALUES (?,?,?)",
            [(ev.type, now, data) for ev, data in zip(new, encoded, strict=True)],
        )
        # One writer inside one transaction: the ids just assigned are consecutive.
        last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - len(new) + 1
        return [
            Event(first + i, ev.type, now, ev.data, data)
            for i, (ev, data) in enumerate(zip(new, encoded, strict=True))
        ]

    # --- row mapping ------------------------------------------------------------------------
    _CONV_COLS = (
        "id, contact_id, channel, channel_kind, last_channel, status, queue, priority, created_at,"
        " updated_at, assignee, required_skills, tags, subject, thread_token, reply_kind,"
        " reply_address, routing, assigned_at, first_response_at, resolved_at, last_inbound_at"
    )

    @staticmethod
    def _conv(row: tuple[Any, ...]) -> Conversation:
        return Conversation(
            id=row[0],
            contact_id=row[1],
            channel=row[2],
            channel_kind=row[3],
            last_channel=row[4],
            status=row[5],
            queue=row[6],
            priority=row[7],
            created_at=row[8],
            updated_at=row[9],
            assignee=row[10],
            required_skills=_loads(row[11]),
            tags=_loads(row[12]),
            subject=row[13],
            thread_token=row[14],
            reply_kind=row[15],
            reply_address=row[16],
            routing=_loads(row[17]),
            assigned_at=row[18],
            first_response_at=row[19],
            resolved_at=row[20],
            last_inbound_at=row[21],
        )

    def _get_conv(self, conn: sqlite3.Connection, conversation_id: str) -> Conversation:
        row = conn.execute(
            f"SELECT {self._CONV_COLS} FROM conversations WHERE id=?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return self._conv(row)

    _MSG_COLS = (
        "id, conversation_id, direction, channel, sender_type, sender_id, text, created_at,"
        " updated_at, html, subject, attachments, external_id, provider_message_id, status,"
        " reason, automated, metadata, raw_blob"
    )

    @staticmethod
    def _msg(row: tuple[Any, ...]) -> Message:
        return Message(
            id=row[0],
            conversation_id=row[1],
            direction=row[2],
            channel=row[3],
            sender_type=row[4],
            sender_id=row[5],
            text=row[6],
            created_at=row[7],
            updated_at=row[8],
            html=row[9],
            subject=row[10],
            attachments=_loads(row[11]),
            external_id=row[12],
            provider_message_id=row[13],
            status=row[14],
            reason=row[15],
            automated=bool(row[16]),
            metadata=_loads(row[17]),
            raw_blob=row[18],
        )

    def _get_msg(self, conn: sqlite3.Connection, message_id: str) -> Message:
        row = conn.execute(
            f"SELECT {self._MSG_COLS} FROM messages WHERE id=?", (message_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"message {message_id} not found")
        return self._msg(row)

    def _contact_of(self, conn: sqlite3.Connection, identity: Identity) -> str | None:
        row = conn.execute(
            "SELECT contact_id FROM identities WHERE kind=? AND address=?",
            (identity.kind, identity.address),
        ).fetchone()
        return None if row is None else self._resolve_contact_id(conn, row[0])

    @staticmethod
    def _resolve_contact_id(conn: sqlite3.Connection, contact_id: str) -> str:
        seen = set()
        while True:
            row = conn.execute(
                "SELECT merged_into FROM contacts WHERE id=?", (contact_id,)
            ).fetchone()
            if row is None or row[0] is None or contact_id in seen:
                return contact_id
            seen.add(contact_id)
            contact_id = row[0]

    def _contact(self, conn: sqlite3.Connection, contact_id: str) -> Contact:
        row = conn.execute(
            "SELECT id, name, attributes, created_at, merged_into FROM contacts WHERE id=?",
            (contact_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")
        # A contact shows the identities of the contacts merged into it.
        identities = conn.execute(
            "SELECT kind, address, verified FROM identities WHERE contact_id=? OR contact_id IN"
            " (SELECT id FROM contacts WHERE merged_into=?) ORDER BY kind, address",
            (contact_id, contact_id),
        ).fetchall()
        claims = conn.execute(
            "SELECT kind, address FROM claims WHERE contact_id=? ORDER BY created_at, kind, address",
            (contact_id,),
        ).fetchall()
        return Contact(
            row[0],
            row[1],
            _loads(row[2]),
            [(str(i[0]), str(i[1]), bool(i[2])) for i in identities],
            row[3],
            row[4],
            claims=[(str(c[0]), str(c[1])) for c in claims],
        )

    # --- ingest ----------------------------------------------------------------------------
    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        """Group commit: ingests that arrive while a transaction is in flight share the next
        one. A caller's answer comes after the COMMIT that holds its message, so durability
        is unchanged; the commit cost is shared. A batch first runs without savepoints (no
        journal to keep); if one of its ingests fails, the transaction rolls back and the
        batch runs again with each ingest in its own savepoint, so only that one fails."""
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_ingests())
        return await future

    async def _flush_ingests(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self.batch_limit],
                self._pending[self.batch_limit :],
            )

            def whole(
                conn: sqlite3.Connection, batch: list[tuple[IngestRequest, Any]] = batch
            ) -> list[IngestOutcome | Exception]:
                return [self._ingest(conn, request) for request, _ in batch]

            def each(
                conn: sqlite3.Connection, batch: list[tuple[IngestRequest, Any]] = batch
            ) -> list[IngestOutcome | Exception]:
                results: list[IngestOutcome | Exception] = []
                for request, _ in batch:
                    conn.execute("SAVEPOINT ingest")
                    try:
                        results.append(self._ingest(conn, request))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO ingest")
                        results.append(exc)
                    conn.execute("RELEASE ingest")
                return results

            outcomes: list[IngestOutcome | Exception]
            try:
                outcomes = await self._tx(whole)
            except Exception as exc:
                # Nothing of the batch is stored. One ingest alone: that is its answer.
                outcomes = [exc]
                if len(batch) > 1:
                    try:
                        outcomes = await self._tx(each)
                    except Exception as again:
                        outcomes = [again] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _ingest(self, conn: sqlite3.Connection, req: IngestRequest) -> IngestOutcome:
        msg, now = req.message, req.now
        # A redelivered message, or a redelivered edit (which points at what it edited).
        row = conn.execute(
            "SELECT id, conversation_id FROM messages WHERE channel=? AND external_id=?"
            " UNION ALL SELECT m.id, m.conversation_id FROM edits e JOIN messages m"
            " ON m.id = e.message_id WHERE e.channel=? AND e.external_id=? LIMIT 1",
            (req.channel, msg.external_id, req.channel, msg.external_id),
        ).fetchone()
        if row is not None:
            return IngestOutcome(
                self._get_conv(conn, row[1]), self._get_msg(conn, row[0]), None, [], duplicate=True
            )

        if msg.edits is not None:
            edited = conn.execute(
                "SELECT id FROM messages WHERE channel=? AND external_id=?",
                (req.channel, msg.edits),
            ).fetchone()
            if edited is not None:
                conn.execute(
                    "UPDATE messages SET text=?, html=?, updated_at=? WHERE id=?",
                    (msg.text, msg.html, now, edited[0]),
                )
                # Record the edit's own external id so a redelivery stays a duplicate.
                conn.execute(
                    "INSERT INTO edits(channel, external_id, message_id, at) VALUES (?,?,?,?)",
                    (req.channel, msg.external_id, edited[0], now),
                )
                updated = self._get_msg(conn, edited[0])
                events = self._events(
                    conn,
                    now,
                    [
                        NewEvent(
                            "message.edited",
                            {
                                "conversation_id": updated.conversation_id,
                                "message": updated.to_api(),
                            },
                        )
                    ],
                )
                return IngestOutcome(
                    self._get_conv(conn, updated.conversation_id), updated, None, events
                )

        # Contact: the sender's identity only. Extra identities are what the customer typed
        # (a chat's pre-chat email): a claim, kept on the sender's own contact for agents to
        # see, never a way into another contact, its conversations or its replies, until the
        # customer proves it (`link_verified`).
        identity = msg.sender
        new_events: list[NewEvent] = []
        contact_id = self._contact_of(conn, identity)
        if contact_id is None:
            contact_id = new_id("ct")
            conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at) VALUES (?,?,?,?,?)",
                (contact_id, msg.sender_name, _dumps(msg.contact_attributes), now, now),
            )
            attributes = dict(msg.contact_attributes)
            new_events.append(NewEvent("contact.created", {"contact_id": contact_id}))
            conn.execute(
                "INSERT INTO identities(kind, address, contact_id, verified) VALUES (?,?,?,1)",
                (identity.kind, identity.address, contact_id),
            )
        else:
            crow = conn.execute(
                "SELECT name, attributes FROM contacts WHERE id=?", (contact_id,)
            ).fetchone()
            attributes = _loads(crow[1])
            if msg.contact_attributes or (msg.sender_name and not crow[0]):
                attributes.update(msg.contact_attributes)
                conn.execute(
                    "UPDATE contacts SET name=COALESCE(name, ?), attributes=?, updated_at=? WHERE id=?",
                    (msg.sender_name, _dumps(attributes), now, contact_id),
                )
        for extra in msg.extra_identities:
            if extra == identity or self._contact_of(conn, extra) == contact_id:
                continue  # already this contact's own, proven identity
            cur = conn.execute(
                "INSERT OR IGNORE INTO claims(contact_id, kind, address, channel, created_at)"
                " VALUES (?,?,?,?,?)",
                (contact_id, extra.kind, extra.address, req.channel, now),
            )
            if cur.rowcount:
                new_events.append(
                    NewEvent(
                        "contact.claimed",
                        {
                            "contact_id": contact_id,
                            "claim": {"kind": extra.kind, "address": extra.address},
                            "verified": False,
                        },
                    )
                )

        # Conversation: thread keys first (same contact only), then the open one, then reopen.
        conv: Conversation | None = None
        if msg.thread_refs:
            marks = ",".join("?" * len(msg.thread_refs))
            hit = conn.execute(
                f"SELECT m.conversation_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                f" WHERE m.provider_message_id IN ({marks}) AND c.contact_id=? AND c.status != 'closed'"
                f" ORDER BY m.created_at DESC LIMIT 1",
                (*msg.thread_refs, contact_id),
            ).fetchone()
            if hit is not None:
                conv = self._get_conv(conn, hit[0])
        if conv is None and msg.thread_token:
            hit = conn.execute(
                "SELECT id FROM conversations WHERE thread_token=? AND contact_id=? AND status != 'closed'",
                (msg.thread_token, contact_id),
            ).fetchone()
            if hit is not None:
                conv = self._get_conv(conn, hit[0])
        if (
            conv is not None
            and conv.status == "resolved"
            and (conv.resolved_at or 0) < now - req.reopen_window
        ):
            conv = None  # too old to reopen: look for the active one instead
        if conv is None:
            # The contact's active conversation, else one resolved within the reopen window.
            hit = conn.execute(
                f"SELECT {self._CONV_COLS} FROM conversations WHERE contact_id=?"
                " AND (status IN ('open','assigned','pending') OR (status='resolved' AND resolved_at >= ?))"
                " ORDER BY status = 'resolved', updated_at DESC LIMIT 1",
                (contact_id, now - req.reopen_window),
            ).fetchone()
            if hit is not None:
                conv = self._conv(hit)

        created = reopened = False
        before = (None, "open") if conv is None else (conv.assignee, conv.status)
        if conv is None:
            cls = req.classify(attributes)
            conv = Conversation(
                id=new_id("cv"),
                contact_id=contact_id,
                channel=req.channel,
                channel_kind=req.channel_kind,
                last_channel=req.channel,
                status="open",
                queue=cls.queue,
                priority=cls.priority,
                created_at=now,
                updated_at=now,
                required_skills=cls.required_skills,
                tags=cls.tags,
                subject=msg.subject,
                thread_token=new_id("t").split("_", 1)[1][-12:],
                routing={"rule": cls.rule, "reasons": cls.reasons},
                reply_kind=identity.kind,
                reply_address=identity.address,
                last_inbound_at=now,
            )
            conn.execute(
                f"INSERT INTO conversations({self._CONV_COLS}) VALUES ({','.join('?' * 22)})",
                (
                    conv.id,
                    conv.contact_id,
                    conv.channel,
                    conv.channel_kind,
                    conv.last_channel,
                    conv.status,
                    conv.queue,
                    conv.priority,
                    conv.created_at,
                    conv.updated_at,
                    None,
                    _dumps(conv.required_skills),
                    _dumps(conv.tags),
                    conv.subject,
                    conv.thread_token,
                    conv.reply_kind,
                    conv.reply_address,
                    _dumps(conv.routing),
                    None,
                    None,
                    None,
                    conv.last_inbound_at,
                ),
            )
            created = True
        elif conv.status == "resolved":
            reopened = True
            conv.status, conv.assignee, conv.resolved_at = "open", None, None
        elif conv.status == "pending":
            conv.status = "assigned" if conv.assignee else "open"

        if not created:
            self._update_for_inbound(conn, req.channel, conv, before, identity, now)
        for blob_id, (content_type, data) in req.blobs.items():
            conn.execute(
                "INSERT OR IGNORE INTO blobs(id, content_type, size, data) VALUES (?,?,?,?)",
                (blob_id, content_type, len(data), data),
            )
        message = Message(
            id=new_id("msg"),
            conversation_id=conv.id,
            direction="in",
            channel=req.channel,
            sender_type="contact",
            sender_id=contact_id,
            text=msg.text,
            created_at=now,
            updated_at=now,
            html=msg.html,
            subject=msg.subject,
            attachments=req.attachments,
            external_id=msg.external_id,
            provider_message_id=msg.provider_message_id,
            automated=msg.automated,
            metadata=msg.metadata,
            raw_blob=req.raw_blob,
        )
        self._insert_message(conn, message)
        if created:
            new_events.append(NewEvent("conversation.created", {"conversation": conv.to_api()}))
        if reopened:
            new_events.append(
                NewEvent("conversation.reopened", {"conversation": conv.to_api(), "by": "customer"})
            )
        new_events.append(
            NewEvent(
                "message.received",
                # Ids only: the message is in `messages`; `events_since` puts it back.
                {"conversation_id": conv.id, "contact_id": contact_id, "message_id": message.id},
            )
        )
        events = self._events(conn, now, new_events)
        return IngestOutcome(conv, message, contact_id, events, created=created, reopened=reopened)

    def _update_for_inbound(
        self,
        conn: sqlite3.Connection,
        channel: str,
        conv: Conversation,
        before: tuple[str | None, str],
        identity: Identity,
        now: float,
    ) -> None:
        """An existing conversation takes a new inbound message."""
        self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
        conv.last_channel = channel
        conv.reply_kind, conv.reply_address = identity.kind, identity.address
        conv.updated_at = conv.last_inbound_at = now
        conn.execute(
            "UPDATE conversations SET status=?, assignee=?, resolved_at=?, last_channel=?, reply_kind=?,"
            " reply_address=?, updated_at=?, last_inbound_at=? WHERE id=?",
            (
                conv.status,
                conv.assignee,
                conv.resolved_at,
                conv.last_channel,
                conv.reply_kind,
                conv.reply_address,
                now,
                now,
                conv.id,
            ),
        )

    @staticmethod
    def _insert_message(conn: sqlite3.Connection, m: Message) -> None:
        conn.execute(
            "INSERT INTO messages(id, conversation_id, direction, channel, sender_type, sender_id, text,"
            " created_at, updated_at, html, subject, attachments, external_id, provider_message_id,"
            " status, reason, automated, metadata, raw_blob) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.id,
                m.conversation_id,
                m.direction,
                m.channel,
                m.sender_type,
                m.sender_id,
                m.text,
                m.created_at,
                m.updated_at,
                m.html,
                m.subject,
                _dumps(m.attachments),
                m.external_id,
                m.provider_message_id,
                m.status,
                m.reason,
                int(m.automated),
                _dumps(m.metadata),
                m.raw_blob,
            ),
        )

    # --- outbound --------------------------------------------------------------------------
    async def add_outbound(self, request: OutboundRequest) -> tuple[Message, list[Event]]:
        return await self._tx(lambda conn: self._add_outbound(conn, request))

    def _add_outbound(
        self, conn: sqlite3.Connection, req: OutboundRequest
    ) -> tuple[Message, list[Event]]:
        conv = self._get_conv(conn, req.conversation_id)
        check_acts(req.scope, conv)
        if conv.status == "closed":
            raise Conflict("the conversation is closed")
        if conv.reply_kind is None:
            raise Conflict("the conversation has no customer address to reply to")
        now = req.now
        message = Message(
            id=new_id("msg"),
            conversation_id=conv.id,
            direction="out",
            channel=req.channel or conv.last_channel,
            sender_type=req.sender_type,  # type: ignore[arg-type]
            sender_id=req.sender_id,
            text=req.text,
            created_at=now,
            updated_at=now,
            html=req.html,
            subject=req.subject,
            status="queued",
            automated=req.automatic,
            metadata=dict(req.metadata),
        )
        self._insert_message(conn, message)
        to_kind, to_address = (
            (req.to.kind, req.to.address) if req.to else (conv.reply_kind, conv.reply_address)
        )
        conn.execute(
            "INSERT INTO outbox(message_id, channel, attempts, next_attempt_at, to_kind, to_address)"
            " VALUES (?,?,0,?,?,?)",
            (message.id, message.channel, now, to_kind, to_address),
        )
        status = conv.status
        first = conv.first_response_at
        if req.sender_type == "agent":
            if first is None:
                first = now
            if status == "assigned":
                status = "pending"
        conn.execute(
            "UPDATE conversations SET status=?, first_response_at=?, updated_at=? WHERE id=?",
            (status, first, now, conv.id),
        )
        self._adjust_load(
            conn, conv.channel_kind, (conv.assignee, conv.status), (conv.assignee, status)
        )
        events = self._events(
            conn,
            now,
            [NewEvent("message.queued", {"conversation_id": conv.id, "message_id": message.id})],
        )
        return message, events

    async def automatic_count(self, contact_id: str, since: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.contact_id=? AND m.direction='out' AND m.automated=1 AND m.created_at >= ?",
                    (contact_id, since),
                ).fetchone()[0]
            )

        return await self._run(op)

    async def apply_receipt(
        self, channel: str, provider_message_id: str, status: str, reason: str | None, now: float
    ) -> list[Event]:
        return await self._tx(
            lambda conn: self._apply_receipt(
                conn, channel, provider_message_id, status, reason, now
            )
        )

    def _apply_receipt(
        self,
        conn: sqlite3.Connection,
        channel: str,
        provider_message_id: str,
        status: str,
        reason: str | None,
        now: float,
    ) -> list[Event]:
        row = conn.execute(
            "SELECT id, status FROM messages WHERE channel=? AND provider_message_id=? AND direction='out'",
            (channel, provider_message_id),
        ).fetchone()
        if row is None:
            # The provider can answer before our send is recorded: keep it for outbox_record.
            # (Receipts for ids we never sent stay here; they are small and never match.)
            conn.execute(
                "INSERT OR IGNORE INTO early_receipts(channel, provider_message_id, status, reason, at)"
                " VALUES (?,?,?,?,?)",
                (channel, provider_message_id, status, reason, now),
            )
            return []
        current = row[1]
        if current == "failed" or (
            status != "failed" and _STATUS_ORDER.get(status, 0) <= _STATUS_ORDER.get(current, 0)
        ):
            return []
        conn.execute(
            "UPDATE messages SET status=?, reason=?, updated_at=? WHERE id=?",
            (status, reason, now, row[0]),
        )
        m = self._get_msg(conn, row[0])
        return self._events(
            conn,
            now,
            [
                NewEvent(
                    f"message.{status}",
                    {"conversation_id": m.conversation_id, "message": m.to_api()},
                )
            ],
        )

    # --- outbox ----------------------------------------------------------------------------
    async def outbox_lease(self, now: float, limit: int, lease_seconds: float) -> list[OutboxItem]:
        def op(conn: sqlite3.Connection) -> list[OutboxItem]:
            rows = conn.execute(
                "SELECT o.message_id, o.attempts, m.conversation_id, m.channel, m.text, m.html,"
                " COALESCE(m.subject, c.subject),"
                " m.automated, COALESCE(o.to_kind, c.reply_kind), COALESCE(o.to_address, c.reply_address),"
                " c.thread_token, m.sender_id, m.created_at, json_extract(m.metadata, '$.prompt')"
                " FROM outbox o JOIN messages m ON m.id = o.message_id"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE o.next_attempt_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?)"
                # Replies leave one conversation in order: none overtakes an earlier one on
                # the same channel (a code mailed on the side never holds up the chat).
                " AND NOT EXISTS (SELECT 1 FROM outbox o2 JOIN messages m2 ON m2.id = o2.message_id"
                " WHERE m2.conversation_id = m.conversation_id AND m2.channel = m.channel"
                " AND (m2.created_at < m.created_at OR (m2.created_at = m.created_at AND m2.id < m.id)))"
                " ORDER BY o.next_attempt_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            items = []
            for r in rows:
                conn.execute(
                    "UPDATE outbox SET lease_until=? WHERE message_id=?",
                    (now + lease_seconds, r[0]),
                )
                refs = [
                    x[0]
                    for x in conn.execute(
                        "SELECT provider_message_id FROM messages WHERE conversation_id=? AND"
                        " provider_message_id IS NOT NULL AND created_at <= (SELECT created_at FROM messages WHERE id=?)"
                        " ORDER BY created_at",
                        (r[2], r[0]),
                    ).fetchall()
                ]
                items.append(
                    OutboxItem(
                        message_id=r[0],
                        conversation_id=r[2],
                        channel=r[3],
                        to=Identity(r[8], r[9]),
                        text=r[4],
                        attempts=r[1],
                        html=r[5],
                        subject=r[6],
                        thread_refs=refs,
                        thread_token=r[10],
                        automatic=bool(r[7]),
                        sender_name=r[11],
                        queued_at=r[12],
                        prompt=_loads(r[13]) if r[13] else None,
                    )
                )
            return items

        return await self._tx(op)

    async def outbox_record(
        self, message_id: str, result: DeliveryResult, next_attempt_at: float | None, now: float
    ) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            row = conn.execute(
                "SELECT attempts FROM outbox WHERE message_id=?", (message_id,)
            ).fetchone()
            if row is None:
                return []
            early: list[tuple[str, str | None]] = []
            if result.status == "sent":
                conn.execute("DELETE FROM outbox WHERE message_id=?", (message_id,))
                conn.execute(
                    "UPDATE messages SET status='sent', provider_message_id=?, reason=NULL, updated_at=? WHERE id=?",
                    (result.provider_message_id, now, message_id),
                )
                kind = "message.sent"
                early = self._early_receipts(conn, message_id, result.provider_message_id)
            elif result.status == "retry" and next_attempt_at is not None:
                conn.execute(
                    "UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, lease_until=NULL, last_error=?"
                    " WHERE message_id=?",
                    (next_attempt_at, result.reason, message_id),
                )
                return []
            else:
                conn.execute("DELETE FROM outbox WHERE message_id=?", (message_id,))
                conn.execute(
                    "UPDATE messages SET status='failed', reason=?, updated_at=? WHERE id=?",
                    (result.reason or "delivery failed", now, message_id),
                )
                kind = "message.failed"
            m = self._get_msg(conn, message_id)
            events = self._events(
                conn,
                now,
                [NewEvent(kind, {"conversation_id": m.conversation_id, "message": m.to_api()})],
            )
            for status, reason in early:
                events += self._apply_receipt(
                    conn, m.channel, result.provider_message_id or "", status, reason, now
                )
            return events

        return await self._tx(op)

    @staticmethod
    def _early_receipts(
        conn: sqlite3.Connection, message_id: str, provider_message_id: str | None
    ) -> list[tuple[str, str | None]]:
        """Receipts that arrived before the send was recorded, oldest first; removed."""
        if not provider_message_id:
            return []
        channel = conn.execute("SELECT channel FROM messages WHERE id=?", (message_id,)).fetchone()[
            0
        ]
        rows = conn.execute(
            "SELECT status, reason FROM early_receipts WHERE channel=? AND provider_message_id=?"
            " ORDER BY at",
            (channel, provider_message_id),
        ).fetchall()
        conn.execute(
            "DELETE FROM early_receipts WHERE channel=? AND provider_message_id=?",
            (channel, provider_message_id),
        )
        return [(str(r[0]), r[1]) for r in rows]

    async def outbox_next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM outbox"
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._run(op)

    async def outbox_release_all(self) -> int:
        return await self._tx(
            lambda conn: conn.execute("UPDATE outbox SET lease_until=NULL").rowcount
        )

    # --- routing ---------------------------------------------------------------------------
    async def sync_agents(self, agents: list[tuple[str, str, dict[str, int]]]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for agent_id, presence, capacity in agents:
                conn.execute(
                    "INSERT INTO agents(id, presence, capacity) VALUES (?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET capacity=excluded.capacity",
                    (agent_id, presence, _dumps(capacity)),
                )

        await self._tx(op)

    async def routing_snapshot(self) -> RoutingSnapshot:
        def op(conn: sqlite3.Connection) -> RoutingSnapshot:
            waiting = [
                WaitingConversation(r[0], r[1], r[2], _loads(r[3]), r[4], r[5])
                for r in conn.execute(
                    "SELECT id, queue, priority, required_skills, channel_kind, created_at FROM conversations"
                    " WHERE status='open' AND assignee IS NULL"
                )
            ]
            agents = self._agent_states(conn)
            loads = {
                (r[0], r[1]): r[2]
                for r in conn.execute(
                    "SELECT agent_id, channel_kind, n FROM agent_load WHERE n > 0"
                )
            }
            rr = dict(conn.execute("SELECT queue, agent_id FROM queue_cursors").fetchall())
            return RoutingSnapshot(waiting, agents, loads, rr)

        return await self._run(op)

    async def routing_state(self, count_waiting: bool = False, head: int = 0) -> RoutingState:
        def op(conn: sqlite3.Connection) -> RoutingState:
            loads = {
                (r[0], r[1]): r[2]
                for r in conn.execute(
                    "SELECT agent_id, channel_kind, n FROM agent_load WHERE n > 0"
                )
            }
            rr = dict(conn.execute("SELECT queue, agent_id FROM queue_cursors").fetchall())
            # The distinct groups by skipping along conversations_routable: one index
            # seek per group, however many conversations wait in each.
            groups: list[WaitingGroup] = []
            select = (
                "SELECT channel_kind, queue, required_skills FROM conversations"
                " INDEXED BY conversations_routable WHERE status='open' AND assignee IS NULL"
            )
            order = " ORDER BY channel_kind, queue, required_skills LIMIT 1"
            row = conn.execute(select + order).fetchone()
            heads: dict[WaitingGroup, list[WaitingConversation]] = {}
            while row is not None:
                group = WaitingGroup(row[0], row[1], _loads(row[2]), row[2])
                groups.append(group)
                if head:
                    heads[group] = self._waiting_page(conn, group, None, head)
                row = conn.execute(
                    select + " AND (channel_kind > ?1 OR (channel_kind = ?1 AND (queue > ?2"
                    " OR (queue = ?2 AND required_skills > ?3))))" + order,
                    row,
                ).fetchone()
            count = None
            if count_waiting:
                count = conn.execute(
                    "SELECT count(*) FROM conversations WHERE status='open' AND assignee IS NULL"
                ).fetchone()[0]
            return RoutingState(self._agent_states(conn), loads, rr, groups, count, heads)

        return await self._run(op)

    async def waiting_page(
        self, group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        return await self._run(lambda conn: self._waiting_page(conn, group, after, limit))

    @staticmethod
    def _waiting_page(
        conn: sqlite3.Connection, group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        sql = (
            "SELECT id, queue, priority, required_skills, channel_kind, created_at"
            " FROM conversations INDEXED BY conversations_routable"
            " WHERE status='open' AND assignee IS NULL"
            " AND channel_kind=? AND queue=? AND required_skills=?"
        )
        args: list[Any] = [group.channel_kind, group.queue, group.skills_key]
        if after is not None:
            sql += (
                " AND (priority < ?4 OR (priority = ?4 AND"
                " (created_at > ?5 OR (created_at = ?5 AND id > ?6))))"
            )
            args += list(after)
        sql += " ORDER BY priority DESC, created_at, id LIMIT ?"
        args.append(limit)
        return [
            WaitingConversation(r[0], r[1], r[2], _loads(r[3]), r[4], r[5])
            for r in conn.execute(sql, args)
        ]

    @staticmethod
    def _agent_states(conn: sqlite3.Connection) -> list[AgentState]:
        return [
            AgentState(r[0], r[1], _loads(r[2]), r[3])
            for r in conn.execute(
                "SELECT id, presence, capacity, last_assigned_at FROM agents ORDER BY id"
            )
        ]

    async def agent_states(self) -> list[AgentState]:
        return await self._run(self._agent_states)

    @staticmethod
    def _load(conn: sqlite3.Connection, agent_id: str, kind: str) -> int:
        row = conn.execute(
            "SELECT n FROM agent_load WHERE agent_id=? AND channel_kind=?", (agent_id, kind)
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _adjust_load(
        conn: sqlite3.Connection,
        kind: str,
        before: tuple[str | None, str],
        after: tuple[str | None, str],
    ) -> None:
        """Keep `agent_load` equal to the count of conversations occupying capacity."""
        was = before[0] if before[1] in LOAD_STATUSES else None
        now = after[0] if after[1] in LOAD_STATUSES else None
        if was == now:
            return
        if was is not None:
            conn.execute(
                "UPDATE agent_load SET n = n - 1 WHERE agent_id=? AND channel_kind=?", (was, kind)
            )
        if now is not None:
            conn.execute(
                "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES (?,?,1)"
                " ON CONFLICT(agent_id, channel_kind) DO UPDATE SET n = n + 1",
                (now, kind),
            )

    async def claim(self, claims: list[Claim], now: float) -> tuple[list[str], list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[list[str], list[Event]]:
            done: list[str] = []
            new: list[NewEvent] = []
            for c in claims:
                agent = conn.execute(
                    "SELECT presence, capacity FROM agents WHERE id=?", (c.agent_id,)
                ).fetchone()
                if agent is None or agent[0] != "online":
                    continue
                # The capacity as it is now, inside this transaction: an admin may have
                # lowered it since the router's snapshot (`c.capacity`) was taken.
                capacity = AgentState(c.agent_id, agent[0], _loads(agent[1]))
                if self._load(conn, c.agent_id, c.channel_kind) >= capacity.capacity_for(
                    c.channel_kind
                ):
                    continue
                cur = conn.execute(
                    "UPDATE conversations SET assignee=?, status='assigned', assigned_at=?, updated_at=?"
                    " WHERE id=? AND status='open' AND assignee IS NULL",
                    (c.agent_id, now, now, c.conversation_id),
                )
                if cur.rowcount != 1:
                    continue
                self._adjust_load(conn, c.channel_kind, (None, "open"), (c.agent_id, "assigned"))
                conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, c.agent_id))
                conn.execute(
                    "INSERT INTO queue_cursors(queue, agent_id) VALUES (?,?)"
                    " ON CONFLICT(queue) DO UPDATE SET agent_id=excluded.agent_id",
                    (c.queue, c.agent_id),
                )
                done.append(c.conversation_id)
                routing = _loads(
                    conn.execute(
                        "SELECT routing FROM conversations WHERE id=?", (c.conversation_id,)
                    ).fetchone()[0]
                )
                new.append(
                    NewEvent(
                        "conversation.assigned",
                        {
                            "conversation_id": c.conversation_id,
                            "agent": c.agent_id,
                            "queue": c.queue,
                            "strategy": c.strategy,
                            "rule": routing.get("rule"),
                            "reasons": [*routing.get("reasons", []), *c.reasons],
                            "by": "router",
                        },
                    )
                )
            return done, self._events(conn, now, new)

        return await self._tx(op)

    async def set_presence(self, agent_id: str, presence: str, now: float) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            cur = conn.execute("UPDATE agents SET presence=? WHERE id=?", (presence, agent_id))
            if cur.rowcount != 1:
                raise NotFound(f"agent {agent_id} not found")
            return self._events(
                conn, now, [NewEvent("agent.presence", {"agent": agent_id, "status": presence})]
            )

        return await self._tx(op)

    async def set_capacity(
        self, agent_id: str, capacity: dict[str, int], now: float
    ) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            cur = conn.execute(
                "UPDATE agents SET capacity=? WHERE id=?", (_dumps(capacity), agent_id)
            )
            if cur.rowcount != 1:
                raise NotFound(f"agent {agent_id} not found")
            return self._events(
                conn, now, [NewEvent("agent.capacity", {"agent": agent_id, "capacity": capacity})]
            )

        return await self._tx(op)

    # --- lifecycle -------------------------------------------------------------------------
    def _change(
        self,
        conversation_id: str,
        mutate: Callable[[sqlite3.Connection, Conversation], NewEvent],
        now: float,
        scope: Scope | None = None,
    ) -> Callable[[sqlite3.Connection], tuple[Conversation, list[Event]]]:
        def op(conn: sqlite3.Connection) -> tuple[Conversation, list[Event]]:
            conv = self._get_conv(conn, conversation_id)
            check_acts(scope, conv)
            before = (conv.assignee, conv.status)
            event = mutate(conn, conv)
            self._adjust_load(conn, conv.channel_kind, before, (conv.assignee, conv.status))
            conv.updated_at = now
            conn.execute(
                "UPDATE conversations SET status=?, assignee=?, queue=?, assigned_at=?, resolved_at=?, updated_at=?"
                " WHERE id=?",
                (
                    conv.status,
                    conv.assignee,
                    conv.queue,
                    conv.assigned_at,
                    conv.resolved_at,
                    now,
                    conv.id,
                ),
            )
            event.data.setdefault("conversation", conv.to_api())
            return conv, self._events(conn, now, [event])

        return op

    async def assign(
        self,
        conversation_id: str,
        agent_id: str,
        capacity: int | None,
        by: str | None,
        now: float,
        scope: Scope | None = None,
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}; reopen it first")
            row = conn.execute(
                "SELECT presence, capacity FROM agents WHERE id=?", (agent_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"agent {agent_id} not found")
            if capacity is not None and conv.assignee != agent_id:
                # The caller read `capacity` earlier; an admin may have lowered it since.
                stored = AgentState(agent_id, row[0], _loads(row[1]))
                limit = min(capacity, stored.capacity_for(conv.channel_kind))
                if self._load(conn, agent_id, conv.channel_kind) >= limit:
                    raise Conflict(
                        f"agent {agent_id} is at capacity ({limit}) for {conv.channel_kind}"
                    )
            conv.assignee, conv.assigned_at = agent_id, now
            if conv.status == "open":
                conv.status = "assigned"
            conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, agent_id))
            return NewEvent(
                "conversation.assigned",
                {
                    "conversation_id": conv.id,
                    "agent": agent_id,
                    "queue": conv.queue,
                    "strategy": "manual",
                    "reasons": [f"assigned manually by {by or 'unknown'}"],
                    "by": by,
                },
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def transfer(
        self, conversation_id: str, queue: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}; reopen it first")
            previous = conv.queue
            conv.queue, conv.assignee, conv.status, conv.assigned_at = queue, None, "open", None
            return NewEvent(
                "conversation.transferred",
                {"conversation_id": conv.id, "from_queue": previous, "queue": queue, "by": by},
            )

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def resolve(
        self, conversation_id: str, by: str | None, scope: Scope | None, now: float
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status in ("resolved", "closed"):
                raise Conflict(f"the conversation is already {conv.status}")
            conv.status, conv.resolved_at = "resolved", now
            return NewEvent("conversation.resolved", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    async def reopen(
        self, conversation_id: str, by: str | None, now: float, scope: Scope | None = None
    ) -> tuple[Conversation, list[Event]]:
        def mutate(conn: sqlite3.Connection, conv: Conversation) -> NewEvent:
            if conv.status not in ("resolved", "closed"):
                raise Conflict(f"the conversation is {conv.status}, not resolved")
            conv.status, conv.assignee, conv.resolved_at, conv.assigned_at = (
                "open",
                None,
                None,
                None,
            )
            return NewEvent("conversation.reopened", {"conversation_id": conv.id, "by": by})

        return await self._tx(self._change(conversation_id, mutate, now, scope))

    # --- queries ---------------------------------------------------------------------------
    async def get_conversation(
        self, conversation_id: str, scope: Scope | None = None
    ) -> Conversation:
        def op(conn: sqlite3.Connection) -> Conversation:
            conv = self._get_conv(conn, conversation_id)
            check_sees(scope, conv)
            return conv

        return await self._run(op)

    async def list_conversations(
        self, flt: ConversationFilter
    ) -> tuple[list[Conversation], str | None]:
        sql, args = self.list_query(flt)

        def op(conn: sqlite3.Connection) -> tuple[list[Conversation], str | None]:
            rows = [self._conv(r) for r in conn.execute(sql, args).fetchall()]
            more = len(rows) > flt.limit
            rows = rows[: flt.limit]
            return rows, (rows[-1].id if more and rows else None)

        return await self._run(op)

    @classmethod
    def list_query(cls, flt: ConversationFilter) -> tuple[str, list[str | int]]:
        """The SQL of a page of `list_conversations`, with its arguments: newest first by
        id, the next page from a cursor (`id < cursor`). Each filter has an index on
        (column, id) (migration 10): a page is a range read, in order."""
        where: list[str] = []
        args: list[str | int] = []
        for col, value in (
            ("status", flt.status),
            ("queue", flt.queue),
            ("assignee", flt.assignee),
            ("last_channel", flt.channel),
            ("contact_id", flt.contact_id),
        ):
            if value is not None:
                where.append(f"{col}=?")
                args.append(value)
        if flt.cursor:
            where.append("id < ?")
            args.append(flt.cursor)
        if flt.scope is not None:
            clause, scope_args = flt.scope.where()
            if clause:
                where.append(clause)
                args.extend(scope_args)
        sql = f"SELECT {cls._CONV_COLS} FROM conversations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(flt.limit + 1)
        return sql, args

    async def messages(self, conversation_id: str, scope: Scope | None = None) -> list[Message]:
        def op(conn: sqlite3.Connection) -> list[Message]:
            check_sees(scope, self._get_conv(conn, conversation_id))
            return [
                self._msg(r)
                for r in conn.execute(
                    f"SELECT {self._MSG_COLS} FROM messages WHERE conversation_id=? ORDER BY created_at, id",
                    (conversation_id,),
                )
            ]

        return await self._run(op)

    def _check_contact(
        self, conn: sqlite3.Connection, contact_id: str, scope: Scope | None
    ) -> None:
        if scope is None:
            return
        clause, args = scope.where()
        if not clause:
            return
        row = conn.execute(
            f"SELECT 1 FROM conversations WHERE contact_id=? AND {clause} LIMIT 1",
            (contact_id, *args),
        ).fetchone()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")

    async def get_contact(self, contact_id: str, scope: Scope | None = None) -> Contact:
        def op(conn: sqlite3.Connection) -> Contact:
            contact = self._contact(conn, contact_id)
            self._check_contact(conn, contact.id, scope)
            return contact

        return await self._run(op)

    async def find_contact(self, identity: Identity, scope: Scope | None = None) -> Contact:
        def op(conn: sqlite3.Connection) -> Contact:
            row = conn.execute(
                "SELECT contact_id FROM identities WHERE kind=? AND address=?",
                (identity.kind, identity.address),
            ).fetchone()
            if row is None:
                raise NotFound(f"no contact with identity {identity.kind}:{identity.address}")
            contact = self._contact(conn, self._resolve_contact_id(conn, row[0]))
            try:
                self._check_contact(conn, contact.id, scope)
            except NotFound:
                raise NotFound(
                    f"no contact with identity {identity.kind}:{identity.address}"
                ) from None
            return contact

        return await self._run(op)

    async def link_verified(
        self, claimant: Identity, claimed: Identity, now: float
    ) -> tuple[str, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[str, list[Event]]:
            source = self._contact_of(conn, claimant)
            if source is None:
                raise NotFound(f"no contact with identity {claimant.kind}:{claimant.address}")
            conn.execute(
                "DELETE FROM claims WHERE contact_id=? AND kind=? AND address=?",
                (source, claimed.kind, claimed.address),
            )
            holder = self._contact_of(conn, claimed)
            ident = {"kind": claimed.kind, "address": claimed.address}
            if holder is None or holder == source:
                conn.execute(
                    "INSERT INTO identities(kind, address, contact_id, verified) VALUES (?,?,?,1)"
                    " ON CONFLICT(kind, address) DO UPDATE SET verified=1",
                    (claimed.kind, claimed.address, source),
                )
                event = NewEvent("contact.verified", {"contact_id": source, "identity": ident})
                return source, self._events(conn, now, [event])
            moved = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM conversations WHERE contact_id=? ORDER BY created_at", (source,)
                )
            ]
            conn.execute(
                "UPDATE conversations SET contact_id=? WHERE contact_id=?", (holder, source)
            )
            conn.execute(
                "UPDATE contacts SET merged_into=?, updated_at=? WHERE id=?", (holder, now, source)
            )
            merge_id = new_id("mg")
            conn.execute(
                "INSERT INTO merges(id, source, target, identity_kind, identity_address,"
                " conversations, at) VALUES (?,?,?,?,?,?,?)",
                (merge_id, source, holder, claimed.kind, claimed.address, _dumps(moved), now),
            )
            event = NewEvent(
                "contact.merged",
                {
                    "merge_id": merge_id,
                    "contact_id": holder,
                    "merged_contact_id": source,
                    "by": "verification",
                    "identity": ident,
                    "conversations": moved,
                },
            )
            return holder, self._events(conn, now, [event])

        return await self._tx(op)

    async def unmerge(self, contact_id: str, now: float) -> tuple[str, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[str, list[Event]]:
            row = conn.execute(
                "SELECT id, target, conversations, identity_kind, identity_address FROM merges"
                " WHERE source=? AND undone_at IS NULL"
                " ORDER BY at DESC LIMIT 1",
                (contact_id,),
            ).fetchone()
            if row is None:
                self._contact(conn, contact_id)  # NotFound for an unknown id
                raise Conflict(f"contact {contact_id} is not merged into another contact")
            merge_id, target, moved = str(row[0]), str(row[1]), _loads(row[2])
            conn.execute(
                "UPDATE contacts SET merged_into=NULL, updated_at=? WHERE id=?", (now, contact_id)
            )
            for conv_id in moved:
                conn.execute(
                    "UPDATE conversations SET contact_id=? WHERE id=? AND contact_id=?",
                    (contact_id, conv_id, target),
                )
            conn.execute("UPDATE merges SET undone_at=? WHERE id=?", (now, merge_id))
            # What it proved is again only what it claims, as before the merge.
            conn.execute(
                "INSERT OR IGNORE INTO claims(contact_id, kind, address, channel, created_at)"
                " VALUES (?,?,?,'',?)",
                (contact_id, row[3], row[4], now),
            )
            event = NewEvent(
                "contact.unmerged",
                {
                    "merge_id": merge_id,
                    "contact_id": target,
                    "unmerged_contact_id": contact_id,
                    "conversations": moved,
                },
            )
            return target, self._events(conn, now, [event])

        return await self._tx(op)

    async def get_blob(self, blob_id: str, scope: Scope | None = None) -> tuple[str, bytes]:
        def op(conn: sqlite3.Connection) -> tuple[str, bytes]:
            if scope is not None:
                clause, args = scope.where("c.queue", "c.assignee")
                if clause:
                    # A blob is seen through a message of a conversation the scope sees.
                    seen = conn.execute(
                        "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                        f" WHERE (m.raw_blob = ? OR instr(m.attachments, ?) > 0) AND {clause}"
                        " LIMIT 1",
                        (blob_id, f'"{blob_id}"', *args),
                    ).fetchone()
                    if seen is None:
                        raise NotFound(f"blob {blob_id} not found")
            row = conn.execute(
                "SELECT content_type, data FROM blobs WHERE id=?", (blob_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"blob {blob_id} not found")
            return str(row[0]), bytes(row[1])

        return await self._run(op)

    async def events_since(self, since: int, limit: int) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            events = [
                Event(r[0], r[1], r[2], _loads(r[3]), r[3])
                for r in conn.execute(
                    "SELECT id, type, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (since, limit),
                )
            ]
            self._with_messages(conn, events)
            return events

        return await self._run(op)

    # Events stored with a `message_id` whose consumers get the whole message (the public
    # shape of the stream and webhooks), and what the message was when the event happened.
    _WITH_MESSAGE: dict[str, dict[str, Any]] = {
        "message.received": {},
        "message.queued": {"status": "queued", "provider_message_id": None, "reason": None},
    }

    def _with_messages(self, conn: sqlite3.Connection, events: list[Event]) -> None:
        """Put the message back into events stored with its id only (the log keeps ids and
        what changed; the message itself is in `messages`)."""
        slim = [e for e in events if e.type in self._WITH_MESSAGE and "message_id" in e.data]
        if not slim:
            return
        ids = sorted({str(e.data["message_id"]) for e in slim})
        found: dict[str, Message] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                f"SELECT {self._MSG_COLS} FROM messages WHERE id IN ({marks})", part
            ):
                found[row[0]] = self._msg(row)
        for event in slim:
            message = found.get(str(event.data["message_id"]))
            if message is None:
                continue  # gone (not expected): the ids are all there is
            shown = message.to_api() | self._WITH_MESSAGE[event.type]
            if self._WITH_MESSAGE[event.type]:
                shown["updated_at"] = shown["created_at"]
            data = {k: v for k, v in event.data.items() if k != "message_id"}
            event.data = data | {"message": shown}
            event.data_json = None

    async def last_event_id(self) -> int:
        return await self._run(
            lambda conn: int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        )

    @staticmethod
    def _pruned_through(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT value FROM kv WHERE namespace='events' AND key='pruned_through'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def events_pruned_through(self) -> int:
        return await self._run(self._pruned_through)

    async def prune_events(self, older_than: float, keep: int | None) -> int:
        batch = 5_000  # rows per transaction: writers wait at most one short delete

        def op(conn: sqlite3.Connection) -> int:
            # The newest event committed before the cutoff, found on the `at` index; ids
            # are in commit order, so everything up to it goes (a prefix of the log).
            row = conn.execute("SELECT MAX(id) FROM events WHERE at < ?", (older_than,)).fetchone()
            upto = int(row[0] or 0)
            if keep is not None:
                last = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
                upto = max(upto, last - keep)
            first = conn.execute("SELECT MIN(id) FROM events").fetchone()[0]
            if first is None or upto < first:
                return 0
            upto = min(upto, int(first) + batch - 1)
            removed = conn.execute("DELETE FROM events WHERE id <= ?", (upto,)).rowcount
            if upto > self._pruned_through(conn):
                conn.execute(
                    "INSERT INTO kv(namespace, key, value) VALUES ('events','pruned_through',?)"
                    " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                    (str(upto),),
                )
            return int(removed)

        total = 0
        while True:
            removed = await self._tx(op)
            total += removed
            if removed < batch:
                return total

    # --- kv --------------------------------------------------------------------------------
    async def kv_get(self, namespace: str, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(op)

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES (?,?,?)"
                " ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                (namespace, key, value),
            )
        )

    async def kv_delete(self, namespace: str, key: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key)
            )
        )

    async def kv_lease(self, namespace: str, key: str, holder: str, ttl: float, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT holder, expires_at FROM leases WHERE name=?", (f"{namespace}:{key}",)
            ).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            conn.execute(
                "INSERT INTO leases(name, holder, expires_at) VALUES (?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at",
                (f"{namespace}:{key}", holder, now + ttl),
            )
            return True

        return await self._tx(op)


_ = ACTIVE_STATUSES  # re-exported for readers of the status vocabulary
