"""Routing state of the SQLite store: agents, presence and capacity, the waiting
conversations by group, and the router's claims."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.domain import load
from gateway.model import AgentState, Event, NewEvent, dumps, loads
from gateway.store.base import (
    Claim,
    NotFound,
    RoutingSnapshot,
    RoutingState,
    WaitingConversation,
    WaitingGroup,
    WaitingKey,
)
from gateway.store.sqlite.rows import SqliteRows
from router.reasons import extend_localized


class SqliteRouting(SqliteRows):
    # --- routing ---------------------------------------------------------------------------
    async def sync_agents(self, agents: list[tuple[str, str, dict[str, int]]]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for agent_id, presence, capacity in agents:
                conn.execute(
                    "INSERT INTO agents(id, presence, capacity) VALUES (?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET capacity=excluded.capacity",
                    (agent_id, presence, dumps(capacity)),
                )

        await self._tx(op)

    async def routing_snapshot(self) -> RoutingSnapshot:
        def op(conn: sqlite3.Connection) -> RoutingSnapshot:
            waiting = [
                WaitingConversation(r[0], r[1], r[2], loads(r[3]), r[4], r[5])
                for r in conn.execute(
                    "SELECT id, queue, priority, required_skills, channel_kind, created_at FROM conversations"
                    " WHERE status='open' AND assignee IS NULL"
                )
            ]
            agents = self._agent_states(conn)
            counts = {
                (r[0], r[1]): r[2]
                for r in conn.execute(
                    "SELECT agent_id, channel_kind, n FROM agent_load WHERE n > 0"
                )
            }
            rr = dict(conn.execute("SELECT queue, agent_id FROM queue_cursors").fetchall())
            return RoutingSnapshot(waiting, agents, counts, rr)

        return await self._run(op)

    async def routing_state(self, count_waiting: bool = False, head: int = 0) -> RoutingState:
        def op(conn: sqlite3.Connection) -> RoutingState:
            counts = {
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
                group = WaitingGroup(row[0], row[1], loads(row[2]), row[2])
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
            return RoutingState(self._agent_states(conn), counts, rr, groups, count, heads)

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
            WaitingConversation(r[0], r[1], r[2], loads(r[3]), r[4], r[5])
            for r in conn.execute(sql, args)
        ]

    async def agent_states(self) -> list[AgentState]:
        return await self._run(self._agent_states)

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
                if not load.has_room(
                    self._load(conn, c.agent_id, c.channel_kind),
                    load.capacity_for(loads(agent[1]), c.channel_kind),
                ):
                    continue
                try:
                    # `claimed`: the database checks the capacity too (migration 11).
                    cur = conn.execute(
                        "UPDATE conversations SET assignee=?, status='assigned', assigned_at=?,"
                        " updated_at=?, claimed=1 WHERE id=? AND status='open' AND assignee IS NULL",
                        (c.agent_id, now, now, c.conversation_id),
                    )
                except sqlite3.IntegrityError:
                    continue  # over the capacity the agent has now
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
                routing = loads(
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
                            "reasons_localized": extend_localized(routing, c.reasons),
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
                "UPDATE agents SET capacity=? WHERE id=?", (dumps(capacity), agent_id)
            )
            if cur.rowcount != 1:
                raise NotFound(f"agent {agent_id} not found")
            return self._events(
                conn, now, [NewEvent("agent.capacity", {"agent": agent_id, "capacity": capacity})]
            )

        return await self._tx(op)
