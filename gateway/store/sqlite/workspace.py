"""The agent workspace on SQLite (issue 14; the role: gateway/store/workspace.py): notes,
canned replies, merging contacts by hand, undoing it, splitting an identity off."""

from __future__ import annotations

import sqlite3
from typing import Any

from connectors.base import Identity
from gateway.ids import new_id
from gateway.model import Contact, Conversation, Event, NewEvent, dumps
from gateway.store.base import Conflict, NotFound, Scope, check_sees
from gateway.store.sqlite.blobs import put_blobs
from gateway.store.sqlite.rows import SqliteRows
from gateway.store.workspace import (
    CANNED_COLS,
    MERGE_COLS,
    NOTE_COLS,
    CannedReply,
    ContactMerge,
    Note,
    Split,
    WorkspaceStore,
    canned_row,
    merge_row,
    note_events,
    note_row,
)


class SqliteWorkspace(SqliteRows, WorkspaceStore):
    # --- notes -----------------------------------------------------------------------------
    async def note_add(
        self,
        conversation_id: str,
        sender_type: str,
        sender_id: str | None,
        text: str,
        mentions: list[str],
        now: float,
        scope: Scope | None = None,
        attachments: list[dict[str, Any]] | None = None,
        blobs: dict[str, tuple[str, bytes]] | None = None,
    ) -> tuple[Note, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Note, list[Event]]:
            check_sees(scope, self._get_conv(conn, conversation_id))
            note = Note(
                new_id("nt"),
                conversation_id,
                sender_type,
                sender_id,
                text,
                list(mentions),
                now,
                list(attachments or []),
            )
            put_blobs(conn, blobs or {})
            conn.execute(
                f"INSERT INTO notes({NOTE_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    note.id,
                    note.conversation_id,
                    note.sender_type,
                    note.sender_id,
                    note.text,
                    dumps(note.mentions),
                    note.created_at,
                    dumps(note.attachments),
                ),
            )
            return note, self._events(conn, now, note_events(note))

        return await self._tx(op)

    async def notes(self, conversation_id: str, scope: Scope | None = None) -> list[Note]:
        def op(conn: sqlite3.Connection) -> list[Note]:
            check_sees(scope, self._get_conv(conn, conversation_id))
            return [
                note_row(r)
                for r in conn.execute(
                    f"SELECT {NOTE_COLS} FROM notes WHERE conversation_id=?"
                    " ORDER BY created_at, id",
                    (conversation_id,),
                )
            ]

        return await self._run(op)

    # --- canned replies --------------------------------------------------------------------
    async def canned_list(self) -> list[CannedReply]:
        def op(conn: sqlite3.Connection) -> list[CannedReply]:
            return [
                canned_row(r)
                for r in conn.execute(
                    f"SELECT {CANNED_COLS} FROM canned_replies ORDER BY shortcut, id"
                )
            ]

        return await self._run(op)

    async def canned_get(self, reply_id: str) -> CannedReply:
        def op(conn: sqlite3.Connection) -> CannedReply:
            row = conn.execute(
                f"SELECT {CANNED_COLS} FROM canned_replies WHERE id=?", (reply_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"canned reply {reply_id} not found")
            return canned_row(row)

        return await self._run(op)

    async def canned_put(self, reply: CannedReply, now: float) -> CannedReply:
        def op(conn: sqlite3.Connection) -> CannedReply:
            taken = conn.execute(
                "SELECT id FROM canned_replies WHERE owner=? AND shortcut=? AND id<>?",
                (reply.owner, reply.shortcut, reply.id),
            ).fetchone()
            if taken is not None:
                raise Conflict(f"the shortcut {reply.shortcut!r} is taken")
            row = conn.execute(
                "SELECT created_at FROM canned_replies WHERE id=?", (reply.id,)
            ).fetchone()
            created = now if row is None else float(row[0])
            conn.execute(
                "INSERT OR REPLACE INTO canned_replies(id, shortcut, title, texts, scope, queues,"
                " agent, owner, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    reply.id,
                    reply.shortcut,
                    reply.title,
                    dumps(reply.texts),
                    reply.scope,
                    dumps(reply.queues),
                    reply.agent,
                    reply.owner,
                    created,
                    now,
                ),
            )
            reply.created_at, reply.updated_at = created, now
            return reply

        return await self._tx(op)

    async def canned_delete(self, reply_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM canned_replies WHERE id=?", (reply_id,)).rowcount == 0:
                raise NotFound(f"canned reply {reply_id} not found")

        await self._tx(op)

    # --- contact panel ---------------------------------------------------------------------
    async def contact_conversations(
        self, contact_id: str, scope: Scope | None = None, limit: int = 200
    ) -> list[Conversation]:
        def op(conn: sqlite3.Connection) -> list[Conversation]:
            clause, args = scope.where() if scope is not None else ("", [])
            sql = f"SELECT {self._CONV_COLS} FROM conversations WHERE contact_id=?"
            if clause:
                sql += f" AND {clause}"
            rows = conn.execute(
                sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (contact_id, *args, limit)
            )
            return [self._conv(r) for r in rows]

        return await self._run(op)

    async def contact_merges(self, contact_id: str) -> list[ContactMerge]:
        def op(conn: sqlite3.Connection) -> list[ContactMerge]:
            return [
                merge_row(r)
                for r in conn.execute(
                    f"SELECT {MERGE_COLS} FROM merges WHERE target=? ORDER BY at DESC, id DESC",
                    (contact_id,),
                )
            ]

        return await self._run(op)

    async def contact_merge(
        self, target: str, source: str, by: str | None, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[ContactMerge, list[Event]]:
            into = self._contact(conn, target)
            other = self._contact(conn, source)
            if into.merged_into is not None:
                raise Conflict(f"contact {target} is merged into {into.merged_into}")
            if other.merged_into is not None:
                raise Conflict(f"contact {source} is merged into {other.merged_into} already")
            if self._resolve_contact_id(conn, target) == source or target == source:
                raise Conflict("a contact cannot be merged into itself")
            moved = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM conversations WHERE contact_id=? ORDER BY created_at", (source,)
                )
            ]
            # They keep `opened_for`: each contact's active conversation stays apart (and
            # goes back on undo).
            conn.execute(
                "UPDATE conversations SET contact_id=? WHERE contact_id=?", (target, source)
            )
            conn.execute(
                "UPDATE contacts SET merged_into=?, updated_at=? WHERE id=?", (target, now, source)
            )
            merge = ContactMerge(new_id("mg"), target, source, now, by, moved)
            conn.execute(
                "INSERT INTO merges(id, source, target, identity_kind, identity_address,"
                " conversations, at, by_whom) VALUES (?,?,?,'','',?,?,?)",
                (merge.id, source, target, dumps(moved), now, by),
            )
            event = NewEvent(
                "contact.merged",
                {
                    "merge_id": merge.id,
                    "contact_id": target,
                    "merged_contact_id": source,
                    "by": by,
                    "conversations": moved,
                    "identities": [
                        {"kind": k, "address": a, "verified": v} for k, a, v in other.identities
                    ],
                },
            )
            return merge, self._events(conn, now, [event])

        return await self._tx(op)

    async def contact_merge_undo(
        self, target: str, merge_id: str, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[ContactMerge, list[Event]]:
            row = conn.execute(
                f"SELECT {MERGE_COLS}, identity_kind, identity_address FROM merges"
                " WHERE id=? AND target=?",
                (merge_id, target),
            ).fetchone()
            if row is None:
                raise NotFound(f"merge {merge_id} of contact {target} not found")
            merge = merge_row(row)
            if merge.undone_at is not None:
                raise Conflict(f"merge {merge_id} was undone already")
            source = merge.source
            conn.execute(
                "UPDATE contacts SET merged_into=NULL, updated_at=? WHERE id=?", (now, source)
            )
            for conv_id in merge.conversations:
                conn.execute(
                    "UPDATE conversations SET contact_id=? WHERE id=? AND contact_id=?",
                    (source, conv_id, target),
                )
            conn.execute("UPDATE merges SET undone_at=? WHERE id=?", (now, merge_id))
            if row[7]:  # a verification's merge: what it proved is again only a claim
                conn.execute(
                    "INSERT OR IGNORE INTO claims(contact_id, kind, address, channel, created_at)"
                    " VALUES (?,?,?,'',?)",
                    (source, row[7], row[8], now),
                )
            merge.undone_at = now
            event = NewEvent(
                "contact.unmerged",
                {
                    "merge_id": merge_id,
                    "contact_id": target,
                    "unmerged_contact_id": source,
                    "conversations": merge.conversations,
                },
            )
            return merge, self._events(conn, now, [event])

        return await self._tx(op)

    async def contact_split(
        self, contact_id: str, identity: Identity, now: float
    ) -> tuple[Split, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Split, list[Event]]:
            contact = self._contact(conn, contact_id)
            held = [(k, a) for k, a, _ in contact.identities]
            if (identity.kind, identity.address) not in held:
                raise NotFound(
                    f"contact {contact_id} has no identity {identity.kind}:{identity.address}"
                )
            if len(held) < 2:
                raise Conflict("the contact's only identity cannot be split off")
            new = new_id("ct")
            conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                " VALUES (?, NULL, '{}', ?, ?)",
                (new, now, now),
            )
            conn.execute(
                "UPDATE identities SET contact_id=? WHERE kind=? AND address=?",
                (new, identity.kind, identity.address),
            )
            moved = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM conversations WHERE contact_id=? AND reply_kind=?"
                    " AND reply_address=? ORDER BY created_at",
                    (contact_id, identity.kind, identity.address),
                )
            ]
            for conv_id in moved:
                conn.execute(
                    "UPDATE conversations SET contact_id=?, opened_for=NULL WHERE id=?",
                    (new, conv_id),
                )
            self._reopen_rule(conn, new)
            event = NewEvent(
                "contact.split",
                {
                    "contact_id": new,
                    "source_contact_id": contact_id,
                    "identity": {"kind": identity.kind, "address": identity.address},
                    "conversations": moved,
                },
            )
            return Split(new, contact_id, moved), self._events(conn, now, [event])

        return await self._tx(op)

    @staticmethod
    def _reopen_rule(conn: sqlite3.Connection, contact_id: str) -> None:
        """The newest active conversation of a contact made by a split is its one active
        conversation under the rule (`conversations_one_active`)."""
        conn.execute(
            "UPDATE conversations SET opened_for=contact_id WHERE id = (SELECT id FROM"
            " conversations WHERE contact_id=? AND status IN ('open','assigned','pending')"
            " ORDER BY updated_at DESC, id DESC LIMIT 1)",
            (contact_id,),
        )

    async def contact_rename(
        self, contact_id: str, name: str | None, now: float
    ) -> tuple[Contact, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Contact, list[Event]]:
            contact = self._contact(conn, self._resolve_contact_id(conn, contact_id))
            if contact.name == name:
                return contact, []
            conn.execute(
                "UPDATE contacts SET name=?, updated_at=? WHERE id=?", (name, now, contact.id)
            )
            contact.name = name
            event = NewEvent("contact.updated", {"contact_id": contact.id, "name": name})
            return contact, self._events(conn, now, [event])

        return await self._tx(op)
