"""The PostgreSQL store's role for time-driven routing: escalation stamps, offers, no-reply
reassignment, sticky routing and the offline policy (migration 3; the SQLite store's is
gateway/store/sqlite/escalation.py, and the rules both apply are gateway/domain/escalation.py).

The stamps (`waits`, `agent_replies`, `presence_stamps`) are kept by `stamp_events` in the
transaction of the change they follow; this module reads them and commits what the timers
decide with compare-and-set updates, so a deadline fired by two instances acts once. An
offer is made under the agent's row lock, as a claim is (gateway/store/postgres/routing.py):
two instances offering to one agent take turns and see each other's units of capacity.
"""

from __future__ import annotations

from typing import Any

from gateway.domain import load
from gateway.domain.escalation import (
    accepted_events,
    away_event,
    offer_data,
    offer_refusal,
    routing_rules,
)
from gateway.ids import new_id
from gateway.model import AgentState, Conversation, Event, NewEvent, dumps, loads
from gateway.store.base import (
    Claim,
    Conflict,
    EscalationStore,
    NotFound,
    Offer,
    ReplyStamp,
    RoutingHint,
    Scope,
    WaitStamp,
    WaitUpdate,
    check_acts,
    check_sees,
)
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase, get_conv, rowcount
from gateway.store.postgres.routing import adjust_load, load_of, lock_agent
from gateway.store.rows import OFFER_COLS, offer_row
from router.reasons import localize

_WAIT_SELECT = (
    "SELECT w.conversation_id, w.reason, w.since, w.step, w.state, w.due,"
    " c.status = 'open' AND c.assignee IS NULL, c.queue, c.priority, c.required_skills,"
    " c.channel_kind, c.routing FROM waits w JOIN conversations c ON c.id = w.conversation_id"
)
EXPIRE_BATCH = 500  # offers expired per transaction


def _stamp(row: Any) -> WaitStamp:
    return WaitStamp(
        row[0],
        row[1],
        float(row[2]),
        int(row[3]),
        row[4],
        row[5],
        bool(row[6]),
        row[7],
        int(row[8]),
        loads(row[9]),
        row[10],
        routing_rules(loads(row[11]) or {}),
    )


async def _decline(
    conn: Conn, conversation_id: str, agent_id: str, reason: str, now: float
) -> None:
    await conn.execute(
        "INSERT INTO declines(conversation_id, agent_id, reason, at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT(conversation_id, agent_id) DO UPDATE"
        " SET reason = excluded.reason, at = excluded.at",
        conversation_id,
        agent_id,
        reason,
        now,
    )


async def _release(conn: Conn, agent_id: str, channel_kind: str) -> None:
    """Give back the unit of capacity a pending offer held."""
    await conn.execute(
        "UPDATE agent_load SET n = n - 1 WHERE agent_id = $1 AND channel_kind = $2",
        agent_id,
        channel_kind,
    )


class PgEscalation(PgBase, EscalationStore):
    # --- escalation ------------------------------------------------------------------------
    async def wait_stamps(
        self, now: float, limit: int, conversation_id: str | None = None
    ) -> list[WaitStamp]:
        async def op(conn: Conn) -> list[WaitStamp]:
            if conversation_id is not None:
                rows = await conn.fetch(
                    _WAIT_SELECT + " WHERE w.conversation_id = $1", conversation_id
                )
                return [_stamp(r) for r in rows]
            rows = await conn.fetch(_WAIT_SELECT + " WHERE w.state = 'new' LIMIT $1", limit)
            rows += await conn.fetch(
                _WAIT_SELECT + " WHERE w.state = 'scheduled' AND w.due <= $1"
                " ORDER BY w.due LIMIT $2",
                now,
                limit,
            )
            return [_stamp(r) for r in rows]

        return await self._read(op)

    async def waits_next_due(self) -> float | None:
        async def op(conn: Conn) -> float | None:
            if await conn.fetchval("SELECT 1 FROM waits WHERE state = 'new' LIMIT 1"):
                return float("-inf")
            due = await conn.fetchval("SELECT MIN(due) FROM waits WHERE state = 'scheduled'")
            return None if due is None else float(due)

        return await self._read(op)

    async def waits_commit(self, updates: list[WaitUpdate], now: float) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            new: list[NewEvent] = []
            for u in updates:
                status = await conn.execute(
                    "UPDATE waits SET step = $1, due = $2, state = $3 WHERE conversation_id = $4"
                    " AND since = $5 AND step = $6 AND state <> 'idle'",
                    u.step,
                    u.due,
                    "idle" if u.due is None else "scheduled",
                    u.conversation_id,
                    u.expect_since,
                    u.expect_step,
                )
                if rowcount(status) != 1:
                    continue  # done by another instance, or the conversation moved on
                if u.queue is not None:
                    status = await conn.execute(
                        "UPDATE conversations SET queue = $1, priority = $2,"
                        " required_skills = $3, updated_at = $4"
                        " WHERE id = $5 AND status = 'open' AND assignee IS NULL",
                        u.queue,
                        u.priority,
                        dumps(u.required_skills or {}),
                        now,
                        u.conversation_id,
                    )
                    if rowcount(status) != 1:
                        continue
                new.extend(NewEvent(t, d) for t, d in u.events)
            return await append_events(conn, now, new)

        return await self._tx(op)

    async def waits_reschedule(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("UPDATE waits SET state = 'new', due = NULL WHERE state <> 'idle'")

        await self._tx(op)

    # --- routing hints ---------------------------------------------------------------------
    async def routing_hints(
        self, ids: list[str], now: float, skip_for: float, sticky_window: float | None
    ) -> dict[str, RoutingHint]:
        async def op(conn: Conn) -> dict[str, RoutingHint]:
            out: dict[str, RoutingHint] = {}
            for r in await conn.fetch(
                "SELECT conversation_id FROM offers WHERE status = 'pending'"
                " AND conversation_id = ANY($1::text[])",
                ids,
            ):
                out.setdefault(r[0], RoutingHint()).offered = True
            for r in await conn.fetch(
                "SELECT conversation_id, array_agg(agent_id) FROM declines"
                " WHERE at > $1 AND conversation_id = ANY($2::text[]) GROUP BY conversation_id",
                now - skip_for,
                ids,
            ):
                out.setdefault(r[0], RoutingHint()).exclude = frozenset(r[1])
            if sticky_window is None:
                return out
            # A new or reopened conversation goes back to the agent who last answered this
            # customer (in any of their conversations), within the window.
            for r in await conn.fetch(
                "SELECT w.conversation_id, s.agent_id"
                " FROM waits w JOIN conversations c ON c.id = w.conversation_id"
                " CROSS JOIN LATERAL (SELECT r.agent_id FROM conversations o"
                " JOIN agent_replies r ON r.conversation_id = o.id"
                " WHERE o.contact_id = c.contact_id AND r.at >= $1"
                " ORDER BY r.at DESC LIMIT 1) s"
                " WHERE w.reason IN ('created', 'reopened') AND w.conversation_id = ANY($2::text[])",
                now - sticky_window,
                ids,
            ):
                out.setdefault(r[0], RoutingHint()).sticky = r[1]
            return out

        return await self._read(op)

    # --- offers ----------------------------------------------------------------------------
    async def offer_create(
        self, claims: list[tuple[Claim, float]], now: float
    ) -> tuple[list[str], list[Event]]:
        async def op(conn: Conn) -> tuple[list[str], list[Event]]:
            done: list[str] = []
            new: list[NewEvent] = []
            agents: dict[str, AgentState | None] = {}
            # Every agent of the batch locked first, in one order (as `claim` does).
            for agent_id in sorted({c.agent_id for c, _ in claims}):
                agents[agent_id] = await lock_agent(conn, agent_id)
            for c, expires_at in claims:
                agent = agents[c.agent_id]
                if agent is None or agent.presence != "online":
                    continue
                if not load.has_room(
                    await load_of(conn, c.agent_id, c.channel_kind),
                    agent.capacity_for(c.channel_kind),
                ):
                    continue
                offer_id = new_id("of")
                # Still waiting and not offered: else nothing is inserted. Two instances
                # offering it at once: the unique index on pending offers makes the second
                # wait for the first and then insert nothing.
                made = await conn.fetchval(
                    f"INSERT INTO offers({OFFER_COLS}, strategy, reasons)"
                    " SELECT $1, $2, $3, $4, $5, 'pending', $6, $7, NULL, $8, $9"
                    " FROM conversations WHERE id = $2 AND status = 'open' AND assignee IS NULL"
                    # Locked: a claim of it by another instance waits for this offer (and
                    # then withdraws it), or this waits for the claim and offers nothing.
                    " FOR UPDATE"
                    " ON CONFLICT (conversation_id) WHERE status = 'pending' DO NOTHING"
                    " RETURNING id",
                    offer_id,
                    c.conversation_id,
                    c.agent_id,
                    c.channel_kind,
                    c.queue,
                    now,
                    expires_at,
                    c.strategy,
                    dumps(localize(c.reasons)),
                )
                if made is None:
                    continue
                # A pending offer holds capacity, as an assignment does.
                await conn.execute(
                    "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES ($1, $2, 1)"
                    " ON CONFLICT(agent_id, channel_kind) DO UPDATE SET n = agent_load.n + 1",
                    c.agent_id,
                    c.channel_kind,
                )
                await conn.execute(
                    "UPDATE agents SET last_assigned_at = $1 WHERE id = $2", now, c.agent_id
                )
                await conn.execute(
                    "INSERT INTO queue_cursors(queue, agent_id) VALUES ($1, $2)"
                    " ON CONFLICT(queue) DO UPDATE SET agent_id = excluded.agent_id",
                    c.queue,
                    c.agent_id,
                )
                done.append(c.conversation_id)
                new.append(
                    NewEvent(
                        "offer.created",
                        offer_data(offer_id, c.conversation_id, c.agent_id, c.queue)
                        | {
                            "strategy": c.strategy,
                            "reasons": c.reasons,
                            "reasons_localized": localize(c.reasons),
                            "expires_at": expires_at,
                        },
                    )
                )
            return done, await append_events(conn, now, new)

        return await self._tx(op)

    async def offer_answer(
        self, conversation_id: str, agent_id: str, accept: bool, now: float, scope: Scope | None
    ) -> tuple[Conversation, list[Event]]:
        async def op(conn: Conn) -> tuple[Conversation, list[Event]]:
            # The conversation's row locked: answers, expiry and assignments of it take turns.
            conv = await get_conv(conn, conversation_id, lock=True)
            # Seen first: a late answer to one's own offer is a 409 (not a 403), even when
            # the conversation went to someone else meanwhile.
            check_sees(scope, conv)
            row = await conn.fetchrow(
                f"SELECT {OFFER_COLS}, strategy, reasons FROM offers WHERE conversation_id = $1"
                " AND agent_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE",
                conversation_id,
                agent_id,
            )
            if row is None:
                raise NotFound(f"no offer of {conversation_id} to {agent_id}")
            offer = offer_row(row)
            refusal = offer_refusal(offer.status, offer.expires_at, now)
            if refusal is not None:
                raise Conflict(refusal)
            check_acts(scope, conv)
            await conn.execute(
                "UPDATE offers SET status = $1, answered_at = $2 WHERE id = $3",
                "accepted" if accept else "rejected",
                now,
                offer.id,
            )
            data = offer_data(offer.id, conversation_id, agent_id, offer.queue)
            if not accept:
                await _release(conn, agent_id, offer.channel_kind)
                await _decline(conn, conversation_id, agent_id, "rejected", now)
                return conv, await append_events(conn, now, [NewEvent("offer.rejected", data)])
            # The offer's unit of capacity becomes the assignment's. Not `claimed`: the
            # capacity was checked (under the agent's lock) when the offer was made, and the
            # database's check would count this unit twice.
            status = await conn.execute(
                "UPDATE conversations SET assignee = $1, status = 'assigned', assigned_at = $2,"
                " updated_at = $2, claimed = FALSE"
                " WHERE id = $3 AND status = 'open' AND assignee IS NULL",
                agent_id,
                now,
                conversation_id,
            )
            if rowcount(status) != 1:
                raise Conflict("the conversation is no longer waiting")
            conv = await get_conv(conn, conversation_id)
            events = accepted_events(data, conv.routing, row[9], loads(row[10]))
            return conv, await append_events(conn, now, events)

        return await self._tx(op)

    async def offers_next_due(self) -> float | None:
        async def op(conn: Conn) -> float | None:
            due = await conn.fetchval("SELECT MIN(expires_at) FROM offers WHERE status = 'pending'")
            return None if due is None else float(due)

        return await self._read(op)

    async def offers_expire(self, now: float, away_queues: frozenset[str]) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            # A worker takes the due offers: another instance expiring at the same moment
            # skips the ones taken here (and finds them expired once this commits).
            rows = await conn.fetch(
                f"SELECT {OFFER_COLS} FROM offers WHERE status = 'pending'"
                " AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                now,
                EXPIRE_BATCH,
            )
            new: list[NewEvent] = []
            for offer in map(offer_row, rows):
                status = await conn.execute(
                    "UPDATE offers SET status = 'expired', answered_at = $1"
                    " WHERE id = $2 AND status = 'pending'",
                    now,
                    offer.id,
                )
                if rowcount(status) != 1:
                    continue
                await _release(conn, offer.agent_id, offer.channel_kind)
                await _decline(conn, offer.conversation_id, offer.agent_id, "timeout", now)
                new.append(
                    NewEvent(
                        "offer.expired",
                        offer_data(offer.id, offer.conversation_id, offer.agent_id, offer.queue),
                    )
                )
                if offer.queue in away_queues:
                    status = await conn.execute(
                        "UPDATE agents SET presence = 'away' WHERE id = $1 AND presence = 'online'",
                        offer.agent_id,
                    )
                    if rowcount(status) == 1:
                        new.append(away_event(offer.agent_id))
            return await append_events(conn, now, new)

        return await self._tx(op)

    async def offers(
        self, agent_id: str | None = None, conversation_id: str | None = None
    ) -> list[Offer]:
        async def op(conn: Conn) -> list[Offer]:
            sql = f"SELECT {OFFER_COLS} FROM offers WHERE status = 'pending'"
            args: list[str] = []
            if agent_id is not None:
                args.append(agent_id)
                sql += f" AND agent_id = ${len(args)}"
            if conversation_id is not None:
                args.append(conversation_id)
                sql += f" AND conversation_id = ${len(args)}"
            return [offer_row(r) for r in await conn.fetch(sql + " ORDER BY created_at, id", *args)]

        return await self._read(op)

    # --- reassignment ----------------------------------------------------------------------
    async def awaiting_reply(self) -> list[ReplyStamp]:
        async def op(conn: Conn) -> list[ReplyStamp]:
            rows = await conn.fetch(
                "SELECT c.id, c.assignee, c.queue, c.channel_kind, c.last_inbound_at,"
                " c.assigned_at FROM conversations c"
                " LEFT JOIN agent_replies r ON r.conversation_id = c.id"
                " WHERE c.status = 'assigned' AND c.assignee IS NOT NULL"
                " AND c.last_inbound_at IS NOT NULL AND c.assigned_at IS NOT NULL"
                " AND (r.at IS NULL OR r.at < c.last_inbound_at)"
            )
            return [ReplyStamp(*tuple(r)) for r in rows]

        return await self._read(op)

    async def offline_agents(self) -> list[tuple[str, float]]:
        async def op(conn: Conn) -> list[tuple[str, float]]:
            return [
                (r[0], float(r[1]))
                for r in await conn.fetch(
                    "SELECT a.id, p.since FROM agents a JOIN presence_stamps p ON p.agent_id = a.id"
                    " WHERE a.presence = 'offline' AND p.presence = 'offline' AND EXISTS"
                    " (SELECT 1 FROM conversations c"
                    " WHERE c.assignee = a.id AND c.status = 'assigned')"
                )
            ]

        return await self._read(op)

    async def requeue(
        self,
        conversation_id: str | None,
        agent_id: str,
        reason: str,
        now: float,
        expect_last_inbound_at: float | None = None,
        expect_offline_since: float | None = None,
    ) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            if conversation_id is not None:
                found = await conn.fetchval(
                    "SELECT c.id FROM conversations c LEFT JOIN agent_replies r"
                    " ON r.conversation_id = c.id WHERE c.id = $1 AND c.assignee = $2"
                    " AND c.status = 'assigned' AND c.last_inbound_at = $3"
                    " AND (r.at IS NULL OR r.at < c.last_inbound_at) FOR UPDATE OF c",
                    conversation_id,
                    agent_id,
                    expect_last_inbound_at,
                )
                ids = [] if found is None else [str(found)]
            else:
                still = await conn.fetchval(
                    "SELECT 1 FROM agents a JOIN presence_stamps p ON p.agent_id = a.id"
                    " WHERE a.id = $1 AND a.presence = 'offline' AND p.presence = 'offline'"
                    " AND p.since = $2 FOR UPDATE OF a",
                    agent_id,
                    expect_offline_since,
                )
                ids = (
                    []
                    if still is None
                    else [
                        str(r[0])
                        for r in await conn.fetch(
                            "SELECT id FROM conversations WHERE assignee = $1"
                            " AND status = 'assigned' ORDER BY id FOR UPDATE",
                            agent_id,
                        )
                    ]
                )
            new: list[NewEvent] = []
            for cid in ids:
                conv = await get_conv(conn, cid)
                await adjust_load(conn, conv.channel_kind, (agent_id, "assigned"), (None, "open"))
                await conn.execute(
                    "UPDATE conversations SET assignee = NULL, status = 'open', assigned_at = NULL,"
                    " claimed = FALSE, updated_at = $1 WHERE id = $2",
                    now,
                    cid,
                )
                await _decline(conn, cid, agent_id, reason, now)
                conv.assignee, conv.status, conv.assigned_at, conv.updated_at = (
                    None,
                    "open",
                    None,
                    now,
                )
                new.append(
                    NewEvent(
                        "conversation.requeued",
                        {
                            "conversation_id": cid,
                            "from_agent": agent_id,
                            "reason": reason,
                            "conversation": conv.to_api(),
                        },
                    )
                )
            return await append_events(conn, now, new)

        return await self._tx(op)
