"""Contacts and identities of the SQLite store: lookups, verified links, merges and their
undoing."""

from __future__ import annotations

import sqlite3

from connectors.base import Identity
from gateway.domain import identity
from gateway.ids import new_id
from gateway.model import Contact, Event, NewEvent, dumps, loads
from gateway.store.base import Conflict, NotFound, Scope
from gateway.store.sqlite.rows import SqliteRows


class SqliteContacts(SqliteRows):
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

    # --- the customer portal (issue 15, gateway/portal/) ------------------------------------
    async def portal_epoch(self, contact_id: str) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT portal_epoch FROM contacts WHERE id=?", (contact_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"contact {contact_id} not found")
            return int(row[0])

        return await self._run(op)

    async def portal_revoke(self, contact_id: str, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            self._contact(conn, contact_id)  # NotFound for an unknown id
            conn.execute(
                "WITH RECURSIVE merged(id) AS (SELECT ?"
                " UNION SELECT c.id FROM contacts c JOIN merged ON c.merged_into = merged.id)"
                " UPDATE contacts SET portal_epoch = portal_epoch + 1, updated_at=?"
                " WHERE id IN (SELECT id FROM merged)",
                (contact_id, now),
            )
            row = conn.execute(
                "SELECT portal_epoch FROM contacts WHERE id=?", (contact_id,)
            ).fetchone()
            return int(row[0])

        return await self._tx(op)

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
            decision = identity.link(source, self._contact_of(conn, claimed))
            ident = {"kind": claimed.kind, "address": claimed.address}
            if decision.action == "verify":
                conn.execute(
                    "INSERT INTO identities(kind, address, contact_id, verified) VALUES (?,?,?,1)"
                    " ON CONFLICT(kind, address) DO UPDATE SET verified=1",
                    (claimed.kind, claimed.address, source),
                )
                event = NewEvent("contact.verified", {"contact_id": source, "identity": ident})
                return source, self._events(conn, now, [event])
            holder = decision.into
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
                (merge_id, source, holder, claimed.kind, claimed.address, dumps(moved), now),
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
            merge_id, target, moved = str(row[0]), str(row[1]), loads(row[2])
            conn.execute(
                "UPDATE contacts SET merged_into=NULL, updated_at=? WHERE id=?", (now, contact_id)
            )
            for conv_id in moved:
                conn.execute(
                    "UPDATE conversations SET contact_id=? WHERE id=? AND contact_id=?",
                    (contact_id, conv_id, target),
                )
            conn.execute("UPDATE merges SET undone_at=? WHERE id=?", (now, merge_id))
            # What it proved is again only what it claims, as before the merge (a merge by
            # hand proved nothing).
            if row[3]:
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
