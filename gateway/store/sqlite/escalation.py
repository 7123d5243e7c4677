"""The SQLite store's role for time-driven routing: escalation stamps, offers, no-reply
reassignment, sticky routing and the offline policy (migration 13).

The stamps (`waits`, `agent_replies`, `presence_stamps`) are kept by triggers in the
transaction of the change they follow; this module reads them and commits what the timers
decide with compare-and-set updates, so a deadline fired by two processes acts once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

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
from gateway.store.rows import OFFER_COLS, offer_row
from router.reasons import localize


class SqliteEscalation(EscalationStore):
    """Mixed into `SqliteStore`, which provides the plumbing below."""

    _tx: Callable[..., Any]
    _run: Callable[..., Any]
    _events: Callable[[sqlite3.Connection, float, list[NewEvent]], list[Event]]
    _get_conv: Callable[[sqlite3.Connection, str], Conversation]
    _load: Callable[[sqlite3.Connection, str, str], int]
    _adjust_load: Callable[
        [sqlite3.Connection, str, tuple[str | None, str], tuple[str | None, str]], None
    ]

    # --- escalation ------------------------------------------------------------------------
    _WAIT_SELECT = (
        "SELECT w.conversation_id, w.reason, w.since, w.step, w.state, w.due,"
        " c.status = 'open' AND c.assignee IS NULL, c.queue, c.priority, c.required_skills,"
        " c.channel_kind, c.routing FROM waits w JOIN conversations c ON c.id = w.conversation_id"
    )

    @staticmethod
    def _stamp(row: tuple[Any, ...]) -> WaitStamp:
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

    async def wait_stamps(
        self, now: float, limit: int, conversation_id: str | None = None
    ) -> list[WaitStamp]:
        def op(conn: sqlite3.Connection) -> list[WaitStamp]:
            if conversation_id is not None:
                rows = conn.execute(
                    self._WAIT_SELECT + " WHERE w.conversation_id = ?", (conversation_id,)
                ).fetchall()
                return [self._stamp(r) for r in rows]
            rows = conn.execute(
                self._WAIT_SELECT + " WHERE w.state = 'new' LIMIT ?",
                (limit,),
            ).fetchall()
            rows += conn.execute(
                self._WAIT_SELECT + " WHERE w.state = 'scheduled'"
                " AND w.due <= ? ORDER BY w.due LIMIT ?",
                (now, limit),
            ).fetchall()
            return [self._stamp(r) for r in rows]

        result: list[WaitStamp] = await self._run(op)
        return result

    async def waits_next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            if conn.execute("SELECT 1 FROM waits WHERE state = 'new' LIMIT 1").fetchone():
                return float("-inf")
            row = conn.execute("SELECT MIN(due) FROM waits WHERE state = 'scheduled'").fetchone()
            return None if row[0] is None else float(row[0])

        result: float | None = await self._run(op)
        return result

    async def waits_commit(self, updates: list[WaitUpdate], now: float) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            new: list[NewEvent] = []
            for u in updates:
                cur = conn.execute(
                    "UPDATE waits SET step = ?, due = ?, state = ? WHERE conversation_id = ?"
                    " AND since = ? AND step = ? AND state != 'idle'",
                    (
                        u.step,
                        u.due,
                        "idle" if u.due is None else "scheduled",
                        u.conversation_id,
                        u.expect_since,
                        u.expect_step,
                    ),
                )
                if cur.rowcount != 1:
                    continue  # done by another process, or the conversation moved on
                if u.queue is not None:
                    cur = conn.execute(
                        "UPDATE conversations SET queue = ?, priority = ?, required_skills = ?,"
                        " updated_at = ? WHERE id = ? AND status = 'open' AND assignee IS NULL",
                        (
                            u.queue,
                            u.priority,
                            dumps(u.required_skills or {}),
                            now,
                            u.conversation_id,
                        ),
                    )
                    if cur.rowcount != 1:
                        continue
                new.extend(NewEvent(t, d) for t, d in u.events)
            return self._events(conn, now, new)

        result: list[Event] = await self._tx(op)
        return result

    async def waits_reschedule(self) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "UPDATE waits SET state = 'new', due = NULL WHERE state != 'idle'"
            )
        )

    # --- routing hints ---------------------------------------------------------------------
    async def routing_hints(
        self, ids: list[str], now: float, skip_for: float, sticky_window: float | None
    ) -> dict[str, RoutingHint]:
        def op(conn: sqlite3.Connection) -> dict[str, RoutingHint]:
            out: dict[str, RoutingHint] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for (cid,) in conn.execute(
                    f"SELECT conversation_id FROM offers WHERE status = 'pending'"
                    f" AND conversation_id IN ({marks})",
                    chunk,
                ):
                    out.setdefault(cid, RoutingHint()).offered = True
                excluded: dict[str, set[str]] = {}
                for cid, agent in conn.execute(
                    f"SELECT conversation_id, agent_id FROM declines WHERE at > ?"
                    f" AND conversation_id IN ({marks})",
                    [now - skip_for, *chunk],
                ):
                    excluded.setdefault(cid, set()).add(agent)
                for cid, agents in excluded.items():
                    out.setdefault(cid, RoutingHint()).exclude = frozenset(agents)
                if sticky_window is None:
                    continue
                # A new or reopened conversation goes back to the agent who last answered
                # this customer (in any of their conversations), within the window.
                for cid, agent in conn.execute(
                    f"SELECT w.conversation_id, (SELECT r.agent_id FROM conversations o"
                    f" JOIN agent_replies r ON r.conversation_id = o.id"
                    f" WHERE o.contact_id = c.contact_id AND r.at >= ?"
                    f" ORDER BY r.at DESC LIMIT 1)"
                    f" FROM waits w JOIN conversations c ON c.id = w.conversation_id"
                    f" WHERE w.reason IN ('created', 'reopened') AND w.conversation_id IN ({marks})",
                    [now - sticky_window, *chunk],
                ):
                    if agent is not None:
                        out.setdefault(cid, RoutingHint()).sticky = agent
            return out

        result: dict[str, RoutingHint] = await self._run(op)
        return result

    # --- offers ----------------------------------------------------------------------------
    async def offer_create(
        self, claims: list[tuple[Claim, float]], now: float
    ) -> tuple[list[str], list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[list[str], list[Event]]:
            done: list[str] = []
            new: list[NewEvent] = []
            for c, expires_at in claims:
                agent = conn.execute(
                    "SELECT presence, capacity FROM agents WHERE id=?", (c.agent_id,)
                ).fetchone()
                if agent is None or agent[0] != "online":
                    continue
                state = AgentState(c.agent_id, agent[0], loads(agent[1]))
                if self._load(conn, c.agent_id, c.channel_kind) >= state.capacity_for(
                    c.channel_kind
                ):
                    continue
                waiting = conn.execute(
                    "SELECT 1 FROM conversations WHERE id=? AND status='open' AND assignee IS NULL"
                    " AND NOT EXISTS (SELECT 1 FROM offers WHERE conversation_id = conversations.id"
                    " AND status = 'pending')",
                    (c.conversation_id,),
                ).fetchone()
                if waiting is None:
                    continue
                offer_id = new_id("of")
                conn.execute(
                    f"INSERT INTO offers({OFFER_COLS}, strategy, reasons)"
                    " VALUES (?,?,?,?,?,'pending',?,?,NULL,?,?)",
                    (
                        offer_id,
                        c.conversation_id,
                        c.agent_id,
                        c.channel_kind,
                        c.queue,
                        now,
                        expires_at,
                        c.strategy,
                        dumps(localize(c.reasons)),
                    ),
                )
                # A pending offer holds capacity, as an assignment does.
                conn.execute(
                    "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES (?,?,1)"
                    " ON CONFLICT(agent_id, channel_kind) DO UPDATE SET n = n + 1",
                    (c.agent_id, c.channel_kind),
                )
                conn.execute("UPDATE agents SET last_assigned_at=? WHERE id=?", (now, c.agent_id))
                conn.execute(
                    "INSERT INTO queue_cursors(queue, agent_id) VALUES (?,?)"
                    " ON CONFLICT(queue) DO UPDATE SET agent_id=excluded.agent_id",
                    (c.queue, c.agent_id),
                )
                done.append(c.conversation_id)
                new.append(
                    NewEvent(
                        "offer.created",
                        {
                            "offer_id": offer_id,
                            "conversation_id": c.conversation_id,
                            "agent": c.agent_id,
                            "queue": c.queue,
                            "strategy": c.strategy,
                            "reasons": c.reasons,
                            "reasons_localized": localize(c.reasons),
                            "expires_at": expires_at,
                        },
                    )
                )
            return done, self._events(conn, now, new)

        result: tuple[list[str], list[Event]] = await self._tx(op)
        return result

    async def offer_answer(
        self, conversation_id: str, agent_id: str, accept: bool, now: float, scope: Scope | None
    ) -> tuple[Conversation, list[Event]]:
        def op(conn: sqlite3.Connection) -> tuple[Conversation, list[Event]]:
            conv = self._get_conv(conn, conversation_id)
            # Seen first: a late answer to one's own offer is a 409 (not a 403), even when
            # the conversation went to someone else meanwhile.
            check_sees(scope, conv)
            row = conn.execute(
                f"SELECT {OFFER_COLS}, strategy, reasons FROM offers WHERE conversation_id=?"
                " AND agent_id=? ORDER BY created_at DESC, id DESC LIMIT 1",
                (conversation_id, agent_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no offer of {conversation_id} to {agent_id}")
            offer = offer_row(row[:9])
            refusal = offer_refusal(offer.status, offer.expires_at, now)
            if refusal is not None:
                raise Conflict(refusal)
            check_acts(scope, conv)
            conn.execute(
                "UPDATE offers SET status=?, answered_at=? WHERE id=?",
                ("accepted" if accept else "rejected", now, offer.id),
            )
            data = offer_data(offer.id, conversation_id, agent_id, offer.queue)
            if not accept:
                conn.execute(
                    "UPDATE agent_load SET n = n - 1 WHERE agent_id=? AND channel_kind=?",
                    (agent_id, offer.channel_kind),
                )
                self._decline(conn, conversation_id, agent_id, "rejected", now)
                return conv, self._events(conn, now, [NewEvent("offer.rejected", data)])
            # The offer's unit of capacity becomes the assignment's.
            cur = conn.execute(
                "UPDATE conversations SET assignee=?, status='assigned', assigned_at=?,"
                " updated_at=? WHERE id=? AND status='open' AND assignee IS NULL",
                (agent_id, now, now, conversation_id),
            )
            if cur.rowcount != 1:
                raise Conflict("the conversation is no longer waiting")
            conv = self._get_conv(conn, conversation_id)
            events = accepted_events(data, conv.routing, row[9], loads(row[10]))
            return conv, self._events(conn, now, events)

        result: tuple[Conversation, list[Event]] = await self._tx(op)
        return result

    @staticmethod
    def _decline(
        conn: sqlite3.Connection, conversation_id: str, agent_id: str, reason: str, now: float
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO declines(conversation_id, agent_id, reason, at)"
            " VALUES (?,?,?,?)",
            (conversation_id, agent_id, reason, now),
        )

    async def offers_next_due(self) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(expires_at) FROM offers WHERE status = 'pending'"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        result: float | None = await self._run(op)
        return result

    async def offers_expire(self, now: float, away_queues: frozenset[str]) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                f"SELECT {OFFER_COLS} FROM offers INDEXED BY offers_pending_due"
                " WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT 500",
                (now,),
            ).fetchall()
            new: list[NewEvent] = []
            for offer in map(offer_row, rows):
                cur = conn.execute(
                    "UPDATE offers SET status='expired', answered_at=? WHERE id=? AND status='pending'",
                    (now, offer.id),
                )
                if cur.rowcount != 1:
                    continue
                conn.execute(
                    "UPDATE agent_load SET n = n - 1 WHERE agent_id=? AND channel_kind=?",
                    (offer.agent_id, offer.channel_kind),
                )
                self._decline(conn, offer.conversation_id, offer.agent_id, "timeout", now)
                new.append(
                    NewEvent(
                        "offer.expired",
                        offer_data(offer.id, offer.conversation_id, offer.agent_id, offer.queue),
                    )
                )
                if offer.queue in away_queues:
                    cur = conn.execute(
                        "UPDATE agents SET presence='away' WHERE id=? AND presence='online'",
                        (offer.agent_id,),
                    )
                    if cur.rowcount == 1:
                        new.append(away_event(offer.agent_id))
            return self._events(conn, now, new)

        result: list[Event] = await self._tx(op)
        return result

    async def offers(
        self, agent_id: str | None = None, conversation_id: str | None = None
    ) -> list[Offer]:
        def op(conn: sqlite3.Connection) -> list[Offer]:
            sql = f"SELECT {OFFER_COLS} FROM offers WHERE status = 'pending'"
            args: list[str] = []
            if agent_id is not None:
                sql += " AND agent_id = ?"
                args.append(agent_id)
            if conversation_id is not None:
                sql += " AND conversation_id = ?"
                args.append(conversation_id)
            return [offer_row(r) for r in conn.execute(sql + " ORDER BY created_at, id", args)]

        result: list[Offer] = await self._run(op)
        return result

    # --- reassignment ----------------------------------------------------------------------
    async def awaiting_reply(self) -> list[ReplyStamp]:
        def op(conn: sqlite3.Connection) -> list[ReplyStamp]:
            rows = conn.execute(
                "SELECT c.id, c.assignee, c.queue, c.channel_kind, c.last_inbound_at,"
                " c.assigned_at FROM conversations c INDEXED BY conversations_list_status"
                " LEFT JOIN agent_replies r ON r.conversation_id = c.id"
                " WHERE c.status = 'assigned' AND c.assignee IS NOT NULL"
                " AND c.last_inbound_at IS NOT NULL AND c.assigned_at IS NOT NULL"
                " AND (r.at IS NULL OR r.at < c.last_inbound_at)"
            ).fetchall()
            return [ReplyStamp(*r) for r in rows]

        result: list[ReplyStamp] = await self._run(op)
        return result

    async def offline_agents(self) -> list[tuple[str, float]]:
        def op(conn: sqlite3.Connection) -> list[tuple[str, float]]:
            return [
                (r[0], float(r[1]))
                for r in conn.execute(
                    "SELECT a.id, p.since FROM agents a JOIN presence_stamps p ON p.agent_id = a.id"
                    " WHERE a.presence = 'offline' AND p.presence = 'offline' AND EXISTS"
                    " (SELECT 1 FROM conversations c INDEXED BY conversations_list_assignee"
                    " WHERE c.assignee = a.id AND c.status = 'assigned')"
                )
            ]

        result: list[tuple[str, float]] = await self._run(op)
        return result

    async def requeue(
        self,
        conversation_id: str | None,
        agent_id: str,
        reason: str,
        now: float,
        expect_last_inbound_at: float | None = None,
        expect_offline_since: float | None = None,
    ) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            if conversation_id is not None:
                row = conn.execute(
                    "SELECT c.id FROM conversations c LEFT JOIN agent_replies r"
                    " ON r.conversation_id = c.id WHERE c.id = ? AND c.assignee = ?"
                    " AND c.status = 'assigned' AND c.last_inbound_at = ?"
                    " AND (r.at IS NULL OR r.at < c.last_inbound_at)",
                    (conversation_id, agent_id, expect_last_inbound_at),
                ).fetchone()
                ids = [] if row is None else [row[0]]
            else:
                still = conn.execute(
                    "SELECT 1 FROM agents a JOIN presence_stamps p ON p.agent_id = a.id"
                    " WHERE a.id = ? AND a.presence = 'offline' AND p.presence = 'offline'"
                    " AND p.since = ?",
                    (agent_id, expect_offline_since),
                ).fetchone()
                ids = (
                    []
                    if still is None
                    else [
                        r[0]
                        for r in conn.execute(
                            "SELECT id FROM conversations WHERE assignee = ? AND status = 'assigned'",
                            (agent_id,),
                        )
                    ]
                )
            new: list[NewEvent] = []
            for cid in ids:
                conv = self._get_conv(conn, cid)
                self._adjust_load(conn, conv.channel_kind, (agent_id, "assigned"), (None, "open"))
                conn.execute(
                    "UPDATE conversations SET assignee = NULL, status = 'open', assigned_at = NULL,"
                    " updated_at = ? WHERE id = ?",
                    (now, cid),
                )
                self._decline(conn, cid, agent_id, reason, now)
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
            return self._events(conn, now, new)

        result: list[Event] = await self._tx(op)
        return result
