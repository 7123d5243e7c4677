"""The agent workspace on PostgreSQL (issue 14; the role: gateway/store/workspace.py; the
same behaviour as gateway/store/sqlite/workspace.py). A merge or split locks the contacts'
rows (in one order) before anything moves."""

from __future__ import annotations

from typing import Any

import asyncpg

from connectors.base import Identity
from gateway.ids import new_id
from gateway.model import Contact, Conversation, Event, NewEvent, dumps
from gateway.store.base import Conflict, NotFound, Scope, check_sees
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import (
    CONV_COLS,
    Conn,
    PgBase,
    conv_row,
    get_contact,
    get_conv,
    resolve_contact_id,
    rowcount,
    scope_where,
)
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


async def _lock_contacts(conn: Conn, *ids: str) -> None:
    await conn.execute(
        "SELECT 1 FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE", sorted(set(ids))
    )


class PgWorkspace(PgBase, WorkspaceStore):
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
        async def op(conn: Conn) -> tuple[Note, list[Event]]:
            check_sees(scope, await get_conv(conn, conversation_id))
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
            for blob_id, (content_type, data) in (blobs or {}).items():
                await conn.execute(
                    "INSERT INTO blobs(id, content_type, size, data) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT DO NOTHING",
                    blob_id,
                    content_type,
                    len(data),
                    data,
                )
            await conn.execute(
                f"INSERT INTO notes({NOTE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                note.id,
                note.conversation_id,
                note.sender_type,
                note.sender_id,
                note.text,
                dumps(note.mentions),
                note.created_at,
                dumps(note.attachments),
            )
            return note, await append_events(conn, now, note_events(note))

        return await self._tx(op)

    async def notes(self, conversation_id: str, scope: Scope | None = None) -> list[Note]:
        async def op(conn: Conn) -> list[Note]:
            check_sees(scope, await get_conv(conn, conversation_id))
            rows = await conn.fetch(
                f"SELECT {NOTE_COLS} FROM notes WHERE conversation_id=$1 ORDER BY created_at, id",
                conversation_id,
            )
            return [note_row(r) for r in rows]

        return await self._read(op)

    # --- canned replies --------------------------------------------------------------------
    async def canned_list(self) -> list[CannedReply]:
        async def op(conn: Conn) -> list[CannedReply]:
            rows = await conn.fetch(
                f"SELECT {CANNED_COLS} FROM canned_replies ORDER BY shortcut, id"
            )
            return [canned_row(r) for r in rows]

        return await self._read(op)

    async def canned_get(self, reply_id: str) -> CannedReply:
        async def op(conn: Conn) -> CannedReply:
            row = await conn.fetchrow(
                f"SELECT {CANNED_COLS} FROM canned_replies WHERE id=$1", reply_id
            )
            if row is None:
                raise NotFound(f"canned reply {reply_id} not found")
            return canned_row(row)

        return await self._read(op)

    async def canned_put(self, reply: CannedReply, now: float) -> CannedReply:
        async def op(conn: Conn) -> CannedReply:
            taken = await conn.fetchval(
                "SELECT id FROM canned_replies WHERE owner=$1 AND shortcut=$2 AND id<>$3",
                reply.owner,
                reply.shortcut,
                reply.id,
            )
            if taken is not None:
                raise Conflict(f"the shortcut {reply.shortcut!r} is taken")
            created = await conn.fetchval(
                "INSERT INTO canned_replies(id, shortcut, title, texts, scope, queues, agent,"
                " owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
                " ON CONFLICT (id) DO UPDATE SET shortcut=excluded.shortcut,"
                " title=excluded.title, texts=excluded.texts, scope=excluded.scope,"
                " queues=excluded.queues, agent=excluded.agent, owner=excluded.owner,"
                " updated_at=excluded.updated_at RETURNING created_at",
                reply.id,
                reply.shortcut,
                reply.title,
                dumps(reply.texts),
                reply.scope,
                dumps(reply.queues),
                reply.agent,
                reply.owner,
                now,
            )
            reply.created_at, reply.updated_at = float(created), now
            return reply

        try:
            return await self._tx(op)
        except asyncpg.exceptions.UniqueViolationError:  # a concurrent insert won
            raise Conflict(f"the shortcut {reply.shortcut!r} is taken") from None

    async def canned_delete(self, reply_id: str) -> None:
        async def op(conn: Conn) -> None:
            status = await conn.execute("DELETE FROM canned_replies WHERE id=$1", reply_id)
            if rowcount(status) == 0:
                raise NotFound(f"canned reply {reply_id} not found")

        await self._tx(op)

    # --- contact panel ---------------------------------------------------------------------
    async def contact_conversations(
        self, contact_id: str, scope: Scope | None = None, limit: int = 200
    ) -> list[Conversation]:
        async def op(conn: Conn) -> list[Conversation]:
            clause, args = scope.where() if scope is not None else ("", [])
            sql = f"SELECT {CONV_COLS} FROM conversations WHERE contact_id=$1"
            if clause:
                clause, args = scope_where(clause, args, 3)
                sql += f" AND {clause}"
            rows = await conn.fetch(
                sql + " ORDER BY created_at DESC, id DESC LIMIT $2", contact_id, limit, *args
            )
            return [conv_row(r) for r in rows]

        return await self._read(op)

    async def contact_merges(self, contact_id: str) -> list[ContactMerge]:
        async def op(conn: Conn) -> list[ContactMerge]:
            rows = await conn.fetch(
                f"SELECT {MERGE_COLS} FROM merges WHERE target=$1 ORDER BY at DESC, id DESC",
                contact_id,
            )
            return [merge_row(r) for r in rows]

        return await self._read(op)

    async def contact_merge(
        self, target: str, source: str, by: str | None, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        async def op(conn: Conn) -> tuple[ContactMerge, list[Event]]:
            await _lock_contacts(conn, target, source)
            into = await get_contact(conn, target)
            other = await get_contact(conn, source)
            if into.merged_into is not None:
                raise Conflict(f"contact {target} is merged into {into.merged_into}")
            if other.merged_into is not None:
                raise Conflict(f"contact {source} is merged into {other.merged_into} already")
            if target == source or await resolve_contact_id(conn, target) == source:
                raise Conflict("a contact cannot be merged into itself")
            moved = [
                str(r[0])
                for r in await conn.fetch(
                    "SELECT id FROM conversations WHERE contact_id=$1 ORDER BY created_at", source
                )
            ]
            await conn.execute(
                "UPDATE conversations SET contact_id=$1 WHERE contact_id=$2", target, source
            )
            await conn.execute(
                "UPDATE contacts SET merged_into=$1, updated_at=$2 WHERE id=$3", target, now, source
            )
            merge = ContactMerge(new_id("mg"), target, source, now, by, moved)
            await conn.execute(
                "INSERT INTO merges(id, source, target, identity_kind, identity_address,"
                " conversations, at, by_whom) VALUES ($1, $2, $3, '', '', $4, $5, $6)",
                merge.id,
                source,
                target,
                dumps(moved),
                now,
                by,
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
            return merge, await append_events(conn, now, [event])

        return await self._tx(op)

    async def contact_merge_undo(
        self, target: str, merge_id: str, now: float
    ) -> tuple[ContactMerge, list[Event]]:
        async def op(conn: Conn) -> tuple[ContactMerge, list[Event]]:
            row = await conn.fetchrow(
                f"SELECT {MERGE_COLS}, identity_kind, identity_address FROM merges"
                " WHERE id=$1 AND target=$2 FOR UPDATE",
                merge_id,
                target,
            )
            if row is None:
                raise NotFound(f"merge {merge_id} of contact {target} not found")
            merge = merge_row(row)
            if merge.undone_at is not None:
                raise Conflict(f"merge {merge_id} was undone already")
            source = merge.source
            await _lock_contacts(conn, target, source)
            await conn.execute(
                "UPDATE contacts SET merged_into=NULL, updated_at=$1 WHERE id=$2", now, source
            )
            await conn.execute(
                "UPDATE conversations SET contact_id=$1 WHERE id = ANY($2) AND contact_id=$3",
                source,
                merge.conversations,
                target,
            )
            await conn.execute("UPDATE merges SET undone_at=$1 WHERE id=$2", now, merge_id)
            if row[7]:  # a verification's merge: what it proved is again only a claim
                await conn.execute(
                    "INSERT INTO claims(contact_id, kind, address, channel, created_at)"
                    " VALUES ($1, $2, $3, '', $4) ON CONFLICT DO NOTHING",
                    source,
                    row[7],
                    row[8],
                    now,
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
            return merge, await append_events(conn, now, [event])

        return await self._tx(op)

    async def contact_split(
        self, contact_id: str, identity: Identity, now: float
    ) -> tuple[Split, list[Event]]:
        async def op(conn: Conn) -> tuple[Split, list[Event]]:
            await _lock_contacts(conn, contact_id)
            contact = await get_contact(conn, contact_id)
            held = [(k, a) for k, a, _ in contact.identities]
            if (identity.kind, identity.address) not in held:
                raise NotFound(
                    f"contact {contact_id} has no identity {identity.kind}:{identity.address}"
                )
            if len(held) < 2:
                raise Conflict("the contact's only identity cannot be split off")
            new = new_id("ct")
            await conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                " VALUES ($1, NULL, '{}', $2, $2)",
                new,
                now,
            )
            await conn.execute(
                "UPDATE identities SET contact_id=$1 WHERE kind=$2 AND address=$3",
                new,
                identity.kind,
                identity.address,
            )
            moved = [
                str(r[0])
                for r in await conn.fetch(
                    "SELECT id FROM conversations WHERE contact_id=$1 AND reply_kind=$2"
                    " AND reply_address=$3 ORDER BY created_at",
                    contact_id,
                    identity.kind,
                    identity.address,
                )
            ]
            await conn.execute(
                "UPDATE conversations SET contact_id=$1, opened_for=NULL WHERE id = ANY($2)",
                new,
                moved,
            )
            # Its newest active conversation is the new contact's one active conversation.
            await conn.execute(
                "UPDATE conversations SET opened_for=contact_id WHERE id = (SELECT id FROM"
                " conversations WHERE contact_id=$1 AND status IN ('open','assigned','pending')"
                " ORDER BY updated_at DESC, id DESC LIMIT 1)",
                new,
            )
            event = NewEvent(
                "contact.split",
                {
                    "contact_id": new,
                    "source_contact_id": contact_id,
                    "identity": {"kind": identity.kind, "address": identity.address},
                    "conversations": moved,
                },
            )
            return Split(new, contact_id, moved), await append_events(conn, now, [event])

        return await self._tx(op)

    async def contact_rename(
        self, contact_id: str, name: str | None, now: float
    ) -> tuple[Contact, list[Event]]:
        async def op(conn: Conn) -> tuple[Contact, list[Event]]:
            contact = await get_contact(conn, await resolve_contact_id(conn, contact_id))
            if contact.name == name:
                return contact, []
            await conn.execute(
                "UPDATE contacts SET name=$1, updated_at=$2 WHERE id=$3", name, now, contact.id
            )
            contact.name = name
            event = NewEvent("contact.updated", {"contact_id": contact.id, "name": name})
            return contact, await append_events(conn, now, [event])

        return await self._tx(op)
