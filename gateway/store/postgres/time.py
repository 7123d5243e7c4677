"""Business hours, SLAs and the visible wait queue on PostgreSQL (the role: TimeStore in
gateway/store/timekeeping.py; the same semantics as gateway/store/sqlite/timekeeping.py).

Several instances run the SLA timer against one database. A pass (`sla_fire`) takes the
row of `sla_cursor` with `FOR UPDATE` first: passes take turns, and the second one starts
from the cursor and the `fired` marks the first committed, so each warning and breach
fires once. Within a pass, each conversation's row is locked while its clocks are read and
its breach actions applied, so an agent's write to it waits for the pass (or the pass for
the write) instead of being overwritten; a breach moves a conversation only while it
still waits (a conditional update).
"""

from __future__ import annotations

from typing import Any

from gateway.model import Event, NewEvent, dumps, loads
from gateway.store.base import WaitingConversation, WaitingGroup
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase, rowcount
from gateway.store.timekeeping import (
    NO_DUE,
    SLA_EVENTS,
    SlaFacts,
    SlaPlan,
    SlaPlanner,
    SlaWaitingKey,
    TimeStore,
    WaitingSeat,
    sla_alarms,
    sla_event_conversation,
    sla_move,
    sla_moved,
    sla_next_at,
    sla_raise,
    sla_raised,
)

_TYPES = list(SLA_EVENTS)
_WAITING = "status='open' AND assignee IS NULL"


async def _sla_facts(conn: Conn, cids: list[str]) -> dict[str, SlaFacts]:
    """The conversations as their SLA clocks read them, their rows locked (in id order)
    until the pass commits; three queries for the whole batch."""
    rows = await conn.fetch(
        "SELECT c.id, c.queue, c.priority, c.status, c.created_at, c.resolved_at, k.attributes"
        " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        " WHERE c.id = ANY($1::text[]) ORDER BY c.id FOR UPDATE OF c",
        cids,
    )
    out: dict[str, SlaFacts] = {}
    for r in rows:
        status = r[3]
        out[r[0]] = SlaFacts(
            r[0],
            r[1],
            int(r[2]),
            status,
            float(r[4]),
            r[5] if status in ("resolved", "closed") else None,
            loads(r[6]) if r[6] else {},
            [],
            [],
        )
    for cid, direction, at in await conn.fetch(
        "SELECT conversation_id, direction, created_at FROM messages"
        " WHERE conversation_id = ANY($1::text[]) AND (direction='in' OR sender_type='agent')"
        " ORDER BY conversation_id, created_at",
        list(out),
    ):
        facts = out[cid]
        (facts.inbound if direction == "in" else facts.agent_replies).append(float(at))
    return out


async def _breach_actions(
    conn: Conn, facts: SlaFacts, plan: SlaPlan, now: float, new: list[NewEvent]
) -> list[str]:
    done: list[str] = []
    cid = facts.conversation_id
    priority = sla_raise(plan, facts)
    if priority is not None:
        await conn.execute(
            "UPDATE conversations SET priority=$1, updated_at=$2 WHERE id=$3", priority, now, cid
        )
        done.append(sla_raised(facts, priority))
    queue = sla_move(plan, facts)
    if queue is not None:
        status = await conn.execute(
            f"UPDATE conversations SET queue=$1, updated_at=$2 WHERE id=$3 AND {_WAITING}",
            queue,
            now,
            cid,
        )
        if rowcount(status):
            done.append(sla_moved(facts, queue, new))
    return done


async def _sla_pass(conn: Conn, cids: list[str], now: float, planner: SlaPlanner) -> list[NewEvent]:
    """Recompute the clocks of `cids` and fire what fell due, in that order; the rows are
    written back in a few statements for the whole batch."""
    facts_of = await _sla_facts(conn, cids)
    fired_of: dict[str, dict[str, dict[str, Any]]] = {
        r[0]: loads(r[1])
        for r in await conn.fetch(
            "SELECT conversation_id, fired FROM sla WHERE conversation_id = ANY($1::text[])",
            list(facts_of),
        )
    }
    new: list[NewEvent] = []
    gone: list[str] = []
    kept: list[tuple[str, str, str, str, float | None]] = []
    dues: dict[str, float] = {}
    for cid in cids:
        facts = facts_of.get(cid)
        if facts is None:
            continue
        fired = fired_of.get(cid, {})
        plan = planner(facts, fired)
        if plan is None:
            gone.append(cid)
            dues[cid] = NO_DUE
            continue
        for kind, data in sla_alarms(facts, plan, fired, now):
            if kind == "breached":
                data["actions"] = await _breach_actions(conn, facts, plan, now, new)
            new.append(NewEvent(f"sla.{kind}", data))
        kept.append((cid, plan.policy, dumps(plan.targets), dumps(fired), sla_next_at(plan, now)))
        dues[cid] = NO_DUE if plan.nearest is None else plan.nearest
    if gone:
        await conn.execute("DELETE FROM sla WHERE conversation_id = ANY($1::text[])", gone)
    if kept:
        ids, policies, targets, fired_json, next_at = (list(c) for c in zip(*kept, strict=True))
        await conn.execute(
            "INSERT INTO sla(conversation_id, policy, targets, fired, next_at, updated_at)"
            " SELECT u.id, u.policy, u.targets, u.fired, u.next_at, $6"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])"
            " AS u(id, policy, targets, fired, next_at)"
            " ON CONFLICT(conversation_id) DO UPDATE SET policy=excluded.policy,"
            " targets=excluded.targets, fired=excluded.fired, next_at=excluded.next_at,"
            " updated_at=excluded.updated_at",
            ids,
            policies,
            targets,
            fired_json,
            next_at,
            now,
        )
    if dues:
        await conn.execute(
            "UPDATE conversations c SET sla_due = d.due"
            " FROM unnest($1::text[], $2::float8[]) AS d(id, due)"
            " WHERE c.id = d.id AND c.sla_due <> d.due",
            list(dues),
            list(dues.values()),
        )
    return new


class PgTime(PgBase, TimeStore):
    # --- SLA clocks ------------------------------------------------------------------------
    async def sla_next_due(self, now: float) -> float | None:
        async def op(conn: Conn) -> float | None:
            cursor = await conn.fetchval("SELECT event_id FROM sla_cursor")
            changed = await conn.fetchval(
                "SELECT 1 FROM events WHERE id > $1 AND type = ANY($2::text[]) LIMIT 1",
                cursor,
                _TYPES,
            )
            if changed is not None:
                return now
            due = await conn.fetchval("SELECT MIN(next_at) FROM sla WHERE next_at IS NOT NULL")
            return None if due is None else float(due)

        return await self._read(op)

    async def sla_fire(self, now: float, planner: SlaPlanner, batch: int = 1000) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            # One pass at a time across instances: the next one waits here, then reads
            # the cursor and the marks this one committed.
            cursor = int(await conn.fetchval("SELECT event_id FROM sla_cursor FOR UPDATE"))
            # The head first: an event committed after it is read by the next pass (its id
            # is above the head, ids being handed out in commit order).
            top = int(await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM events"))
            rows = await conn.fetch(
                "SELECT id, data FROM events WHERE id > $1 AND id <= $2"
                " AND type = ANY($3::text[]) ORDER BY id LIMIT $4",
                cursor,
                top,
                _TYPES,
                batch,
            )
            if len(rows) == batch:
                top = int(rows[-1][0])
            ids: dict[str, None] = {}
            for _, data in rows:
                cid = sla_event_conversation(loads(data))
                if cid:
                    ids[cid] = None
            for (cid,) in await conn.fetch(
                "SELECT conversation_id FROM sla WHERE next_at IS NOT NULL AND next_at <= $1",
                now,
            ):
                ids[cid] = None
            new = await _sla_pass(conn, list(ids), now, planner) if ids else []
            await conn.execute(
                "UPDATE sla_cursor SET event_id=$1 WHERE id=1 AND event_id < $1", max(top, cursor)
            )
            return await append_events(conn, now, new)

        return await self._tx(op)

    async def sla_of(self, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        async def op(conn: Conn) -> dict[str, dict[str, Any]]:
            if not conversation_ids:
                return {}
            return {
                cid: {"policy": policy, "targets": loads(targets), "fired": loads(fired)}
                for cid, policy, targets, fired in await conn.fetch(
                    "SELECT conversation_id, policy, targets, fired FROM sla"
                    " WHERE conversation_id = ANY($1::text[])",
                    conversation_ids,
                )
            }

        return await self._read(op)

    # --- routing order `sla` ---------------------------------------------------------------
    async def waiting_page_sla(
        self, group: WaitingGroup, after: SlaWaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        async def op(conn: Conn) -> list[WaitingConversation]:
            sql = (
                "SELECT id, queue, priority, required_skills, channel_kind, created_at, sla_due"
                f" FROM conversations WHERE {_WAITING}"
                " AND channel_kind=$1 AND queue=$2 AND required_skills=$3"
            )
            args: list[Any] = [group.channel_kind, group.queue, group.skills_key]
            if after is not None:
                sql += (
                    " AND (priority < $4 OR (priority = $4 AND (sla_due > $5 OR (sla_due = $5 AND"
                    " (created_at > $6 OR (created_at = $6 AND id > $7))))))"
                )
                args += list(after)
            sql += f" ORDER BY priority DESC, sla_due, created_at, id LIMIT ${len(args) + 1}"
            args.append(limit)
            return [
                WaitingConversation(r[0], r[1], r[2], loads(r[3]), r[4], r[5], sla_due=r[6])
                for r in await conn.fetch(sql, *args)
            ]

        return await self._read(op)

    # --- the customer-facing wait queue ----------------------------------------------------
    async def notice_once(self, conversation_id: str, kind: str, now: float) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                "INSERT INTO notices(conversation_id, kind, at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                conversation_id,
                kind,
                now,
            )
            return rowcount(status) == 1

        return await self._tx(op)

    async def waiting_seats(self, channel_kinds: list[str], limit: int) -> list[WaitingSeat]:
        async def op(conn: Conn) -> list[WaitingSeat]:
            if not channel_kinds:
                return []
            out: list[WaitingSeat] = []
            seen: dict[tuple[str, str], int] = {}
            for r in await conn.fetch(
                "SELECT c.id, c.queue, c.contact_id, c.last_channel, c.reply_kind,"
                " c.reply_address, c.created_at, k.attributes, c.channel_kind,"
                " (SELECT m.automated FROM messages m WHERE m.conversation_id = c.id"
                "  AND m.direction = 'in' ORDER BY m.created_at DESC LIMIT 1)"
                " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
                " WHERE c.status='open' AND c.assignee IS NULL"
                " AND c.channel_kind = ANY($1::text[])"
                " ORDER BY c.channel_kind, c.queue, c.priority DESC, c.created_at, c.id LIMIT $2",
                channel_kinds,
                limit,
            ):
                key = (r[8], r[1])
                seen[key] = seen.get(key, 0) + 1
                out.append(
                    WaitingSeat(
                        r[0],
                        r[1],
                        seen[key],
                        r[2],
                        r[3],
                        r[4],
                        r[5],
                        r[6],
                        loads(r[7] or "{}"),
                        bool(r[9]),
                    )
                )
            return out

        return await self._read(op)

    async def noticed(self, conversation_ids: list[str], kind: str) -> set[str]:
        async def op(conn: Conn) -> set[str]:
            if not conversation_ids:
                return set()
            return {
                str(r[0])
                for r in await conn.fetch(
                    "SELECT conversation_id FROM notices WHERE kind=$1"
                    " AND conversation_id = ANY($2::text[])",
                    kind,
                    conversation_ids,
                )
            }

        return await self._read(op)
