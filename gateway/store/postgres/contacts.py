"""Contacts on PostgreSQL: who a customer is, what they claim, verified links and merges
(the rules: gateway/domain/identity.py).

A merge locks both contacts' rows (in one order) before anything moves."""

from __future__ import annotations

import asyncpg

from connectors.base import Identity
from gateway.domain import identity
from gateway.ids import new_id
from gateway.model import Contact, Event, NewEvent, dumps, loads
from gateway.store.base import Conflict, NotFound, Scope
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import (
    Conn,
    PgBase,
    contact_of,
    get_contact,
    resolve_contact_id,
    scope_where,
)


class PgContacts(PgBase):
    @staticmethod
    async def _check_contact(conn: Conn, contact_id: str, scope: Scope | None) -> None:
        if scope is None:
            return
        clause, args = scope.where()
        if not clause:
            return
        clause, args = scope_where(clause, args, 2)
        found = await conn.fetchval(
            f"SELECT 1 FROM conversations WHERE contact_id=$1 AND {clause} LIMIT 1",
            contact_id,
            *args,
        )
        if found is None:
            raise NotFound(f"contact {contact_id} not found")

    async def get_contact(self, contact_id: str, scope: Scope | None = None) -> Contact:
        async def op(conn: Conn) -> Contact:
            contact = await get_contact(conn, contact_id)
            await self._check_contact(conn, contact.id, scope)
            return contact

        return await self._read(op)

    async def find_contact(self, identity: Identity, scope: Scope | None = None) -> Contact:
        missing = f"no contact with identity {identity.kind}:{identity.address}"

        async def op(conn: Conn) -> Contact:
            found = await conn.fetchval(
                "SELECT contact_id FROM identities WHERE kind=$1 AND address=$2",
                identity.kind,
                identity.address,
            )
            if found is None:
                raise NotFound(missing)
            contact = await get_contact(conn, await resolve_contact_id(conn, found))
            try:
                await self._check_contact(conn, contact.id, scope)
            except NotFound:
                raise NotFound(missing) from None
            return contact

        return await self._read(op)

    # --- the customer portal (issue 15, gateway/portal/) ------------------------------------
    async def portal_epoch(self, contact_id: str) -> int:
        async def op(conn: Conn) -> int:
            epoch = await conn.fetchval("SELECT portal_epoch FROM contacts WHERE id=$1", contact_id)
            if epoch is None:
                raise NotFound(f"contact {contact_id} not found")
            return int(epoch)

        return await self._read(op)

    async def portal_revoke(self, contact_id: str, now: float) -> int:
        async def op(conn: Conn) -> int:
            await conn.execute(
                'WITH RECURSIVE merged(id) AS (SELECT $1::text COLLATE "C"'
                " UNION SELECT c.id FROM contacts c JOIN merged ON c.merged_into = merged.id)"
                " UPDATE contacts SET portal_epoch = portal_epoch + 1, updated_at=$2"
                " WHERE id IN (SELECT id FROM merged)",
                contact_id,
                now,
            )
            epoch = await conn.fetchval("SELECT portal_epoch FROM contacts WHERE id=$1", contact_id)
            if epoch is None:
                raise NotFound(f"contact {contact_id} not found")
            return int(epoch)

        return await self._tx(op)

    async def link_verified(
        self, claimant: Identity, claimed: Identity, now: float
    ) -> tuple[str, list[Event]]:
        async def op(conn: Conn) -> tuple[str, list[Event]]:
            source = await contact_of(conn, claimant)
            if source is None:
                raise NotFound(f"no contact with identity {claimant.kind}:{claimant.address}")
            await conn.execute(
                "DELETE FROM claims WHERE contact_id=$1 AND kind=$2 AND address=$3",
                source,
                claimed.kind,
                claimed.address,
            )
            decision = identity.link(source, await contact_of(conn, claimed))
            ident = {"kind": claimed.kind, "address": claimed.address}
            if decision.action == "verify":
                await conn.execute(
                    "INSERT INTO identities(kind, address, contact_id, verified)"
                    " VALUES ($1, $2, $3, TRUE)"
                    " ON CONFLICT(kind, address) DO UPDATE SET verified=TRUE",
                    claimed.kind,
                    claimed.address,
                    source,
                )
                event = NewEvent("contact.verified", {"contact_id": source, "identity": ident})
                return source, await append_events(conn, now, [event])
            # Both contacts locked, in one order, before anything moves.
            await conn.execute(
                "SELECT 1 FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                sorted({source, decision.into}),
            )
            moved = [
                str(r[0])
                for r in await conn.fetch(
                    "SELECT id FROM conversations WHERE contact_id=$1 ORDER BY created_at", source
                )
            ]
            # They keep `opened_for`: the holder's own active conversation and the merged
            # contact's stay apart (conversations_one_active).
            holder = decision.into
            await conn.execute(
                "UPDATE conversations SET contact_id=$1 WHERE contact_id=$2", holder, source
            )
            await conn.execute(
                "UPDATE contacts SET merged_into=$1, updated_at=$2 WHERE id=$3",
                holder,
                now,
                source,
            )
            merge_id = new_id("mg")
            await conn.execute(
                "INSERT INTO merges(id, source, target, identity_kind, identity_address,"
                " conversations, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                merge_id,
                source,
                holder,
                claimed.kind,
                claimed.address,
                dumps(moved),
                now,
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
            return holder, await append_events(conn, now, [event])

        return await self._tx(op, retry=(asyncpg.exceptions.UniqueViolationError,))

    async def unmerge(self, contact_id: str, now: float) -> tuple[str, list[Event]]:
        async def op(conn: Conn) -> tuple[str, list[Event]]:
            row = await conn.fetchrow(
                "SELECT id, target, conversations, identity_kind, identity_address FROM merges"
                " WHERE source=$1 AND undone_at IS NULL ORDER BY at DESC LIMIT 1 FOR UPDATE",
                contact_id,
            )
            if row is None:
                await get_contact(conn, contact_id)  # NotFound for an unknown id
                raise Conflict(f"contact {contact_id} is not merged into another contact")
            merge_id, target, moved = str(row[0]), str(row[1]), loads(row[2])
            await conn.execute(
                "UPDATE contacts SET merged_into=NULL, updated_at=$1 WHERE id=$2", now, contact_id
            )
            await conn.execute(
                "UPDATE conversations SET contact_id=$1 WHERE id = ANY($2) AND contact_id=$3",
                contact_id,
                list(moved),
                target,
            )
            await conn.execute("UPDATE merges SET undone_at=$1 WHERE id=$2", now, merge_id)
            # What it proved is again only what it claims, as before the merge (a merge by
            # hand proved nothing).
            if row[3]:
                await conn.execute(
                    "INSERT INTO claims(contact_id, kind, address, channel, created_at)"
                    " VALUES ($1, $2, $3, '', $4) ON CONFLICT DO NOTHING",
                    contact_id,
                    row[3],
                    row[4],
                    now,
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
            return target, await append_events(conn, now, [event])

        return await self._tx(op)
