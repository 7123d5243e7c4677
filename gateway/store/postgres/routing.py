"""Routing state and claims on PostgreSQL: agents, their load, the waiting conversations.

A claim or a manual assignment locks the agent's row (`FOR UPDATE`) before it reads the
agent's load, so two instances assigning to one agent take turns and each sees the other's
committed assignment: capacity is checked as it is when the claim commits. The only other
writer of an agent's row, `set_capacity`, takes the same lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.domain import load
from gateway.model import AgentState, Event, NewEvent, dumps, loads
from gateway.store.base import (
    Claim,
    NotFound,
    RoutingSnapshot,
    RoutingState,
    RoutingStore,
    WaitingConversation,
    WaitingGroup,
    WaitingKey,
)
from gateway.store.postgres.eventlog import append_events
from gateway.store.postgres.pool import Conn, PgBase, rowcount
from router.reasons import extend_localized

T = TypeVar("T")
_WAITING = "status='open' AND assignee IS NULL"


async def adjust_load(
    conn: Conn, kind: str, before: tuple[str | None, str], after: tuple[str | None, str]
) -> None:
    """Keep `agent_load` equal to the count of conversations occupying capacity (the
    rule: gateway/domain/load.py)."""
    for agent, delta in load.changes(before, after):
        if delta < 0:
            await conn.execute(
                "UPDATE agent_load SET n = n + $1 WHERE agent_id=$2 AND channel_kind=$3",
                delta,
                agent,
                kind,
            )
        else:
            await conn.execute(
                "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES ($1, $2, $3)"
                " ON CONFLICT(agent_id, channel_kind) DO UPDATE SET n = agent_load.n + excluded.n",
                agent,
                kind,
                delta,
            )


async def load_of(conn: Conn, agent_id: str, kind: str) -> int:
    n = await conn.fetchval(
        "SELECT n FROM agent_load WHERE agent_id=$1 AND channel_kind=$2", agent_id, kind
    )
    return 0 if n is None else int(n)


async def lock_agent(conn: Conn, agent_id: str) -> AgentState | None:
    """The agent as it is now, its row locked until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT presence, capacity, last_assigned_at FROM agents WHERE id=$1 FOR UPDATE",
        agent_id,
    )
    return None if row is None else AgentState(agent_id, row[0], loads(row[1]), row[2])


async def _agent_states(conn: Conn) -> list[AgentState]:
    return [
        AgentState(r[0], r[1], loads(r[2]), r[3])
        for r in await conn.fetch(
            "SELECT id, presence, capacity, last_assigned_at FROM agents ORDER BY id"
        )
    ]


async def _loads(conn: Conn) -> dict[tuple[str, str], int]:
    return {
        (r[0], r[1]): int(r[2])
        for r in await conn.fetch("SELECT agent_id, channel_kind, n FROM agent_load WHERE n > 0")
    }


async def _rr(conn: Conn) -> dict[str, str]:
    return {r[0]: r[1] for r in await conn.fetch("SELECT queue, agent_id FROM queue_cursors")}


def _waiting(r: Any) -> WaitingConversation:
    return WaitingConversation(r[0], r[1], r[2], loads(r[3]), r[4], r[5])


async def _waiting_page(
    conn: Conn, group: WaitingGroup, after: WaitingKey | None, limit: int
) -> list[WaitingConversation]:
    sql = (
        "SELECT id, queue, priority, required_skills, channel_kind, created_at"
        f" FROM conversations WHERE {_WAITING}"
        " AND channel_kind=$1 AND queue=$2 AND required_skills=$3"
    )
    args: list[Any] = [group.channel_kind, group.queue, group.skills_key]
    if after is not None:
        sql += (
            " AND (priority < $4 OR (priority = $4 AND"
            " (created_at > $5 OR (created_at = $5 AND id > $6))))"
        )
        args += list(after)
    sql += f" ORDER BY priority DESC, created_at, id LIMIT ${len(args) + 1}"
    args.append(limit)
    return [_waiting(r) for r in await conn.fetch(sql, *args)]


class PgRouting(PgBase, RoutingStore):
    async def sync_agents(self, agents: list[tuple[str, str, dict[str, int]]]) -> None:
        async def op(conn: Conn) -> None:
            for agent_id, presence, capacity in sorted(agents):
                await conn.execute(
                    "INSERT INTO agents(id, presence, capacity) VALUES ($1, $2, $3)"
                    " ON CONFLICT(id) DO UPDATE SET capacity=excluded.capacity",
                    agent_id,
                    presence,
                    dumps(capacity),
                )

        await self._tx(op)

    async def agent_states(self) -> list[AgentState]:
        return await self._read(_agent_states)

    async def routing_snapshot(self) -> RoutingSnapshot:
        async def op(conn: Conn) -> RoutingSnapshot:
            waiting = [
                _waiting(r)
                for r in await conn.fetch(
                    "SELECT id, queue, priority, required_skills, channel_kind, created_at"
                    f" FROM conversations WHERE {_WAITING}"
                )
            ]
            return RoutingSnapshot(
                waiting, await _agent_states(conn), await _loads(conn), await _rr(conn)
            )

        return await self._snapshot(op)

    async def _snapshot(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """A read of several statements that sees one state (REPEATABLE READ, read only)."""
        try:
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                result = await fn(conn)
        except Exception as exc:
            if (translated := self._translated(exc)) is None:
                raise
            raise translated from exc
        self.outage.succeeded()
        return result

    async def routing_state(self, count_waiting: bool = False, head: int = 0) -> RoutingState:
        async def op(conn: Conn) -> RoutingState:
            loads_, rr = await _loads(conn), await _rr(conn)
            # The distinct groups by skipping along conversations_routable: one index seek
            # per group, however many conversations wait in each.
            groups: list[WaitingGroup] = []
            heads: dict[WaitingGroup, list[WaitingConversation]] = {}
            select = (
                f"SELECT channel_kind, queue, required_skills FROM conversations WHERE {_WAITING}"
            )
            order = " ORDER BY channel_kind, queue, required_skills LIMIT 1"
            row = await conn.fetchrow(select + order)
            while row is not None:
                group = WaitingGroup(row[0], row[1], loads(row[2]), row[2])
                groups.append(group)
                if head:
                    heads[group] = await _waiting_page(conn, group, None, head)
                row = await conn.fetchrow(
                    select + " AND (channel_kind, queue, required_skills) > ($1, $2, $3)" + order,
                    row[0],
                    row[1],
                    row[2],
                )
            count = None
            if count_waiting:
                count = int(
                    await conn.fetchval(f"SELECT count(*) FROM conversations WHERE {_WAITING}")
                )
            return RoutingState(await _agent_states(conn), loads_, rr, groups, count, heads)

        return await self._snapshot(op)

    async def waiting_page(
        self, group: WaitingGroup, after: WaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        return await self._read(lambda conn: _waiting_page(conn, group, after, limit))

    async def claim(self, claims: list[Claim], now: float) -> tuple[list[str], list[Event]]:
        async def op(conn: Conn) -> tuple[list[str], list[Event]]:
            done: list[str] = []
            new: list[NewEvent] = []
            agents: dict[str, AgentState | None] = {}
            # Every agent of the batch locked first, in one order: two batches naming the
            # same agents cannot lock them crosswise.
            for agent_id in sorted({c.agent_id for c in claims}):
                agents[agent_id] = await lock_agent(conn, agent_id)
            for c in claims:
                agent = agents[c.agent_id]
                if agent is None or agent.presence != "online":
                    continue
                # The capacity as it is now (locked): an admin may have lowered it since the
                # router's snapshot (`c.capacity`) was taken.
                if not load.has_room(
                    await load_of(conn, c.agent_id, c.channel_kind),
                    load.capacity_for(agent.capacity, c.channel_kind),
                ):
                    continue
                routing_json = await conn.fetchval(
                    # `claimed`: the database checks the capacity too (the trigger).
                    "UPDATE conversations SET assignee=$1, status='assigned', assigned_at=$2,"
                    f" updated_at=$2, claimed=TRUE WHERE id=$3 AND {_WAITING} RETURNING routing",
                    c.agent_id,
                    now,
                    c.conversation_id,
                )
                if routing_json is None:
                    continue  # taken, moved or closed since the plan
                await adjust_load(conn, c.channel_kind, (None, "open"), (c.agent_id, "assigned"))
                await conn.execute(
                    "UPDATE agents SET last_assigned_at=$1 WHERE id=$2", now, c.agent_id
                )
                await conn.execute(
                    "INSERT INTO queue_cursors(queue, agent_id) VALUES ($1, $2)"
                    " ON CONFLICT(queue) DO UPDATE SET agent_id=excluded.agent_id",
                    c.queue,
                    c.agent_id,
                )
                done.append(c.conversation_id)
                routing = loads(routing_json)
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
            return done, await append_events(conn, now, new)

        return await self._tx(op)

    async def set_presence(self, agent_id: str, presence: str, now: float) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            status = await conn.execute(
                "UPDATE agents SET presence=$1 WHERE id=$2", presence, agent_id
            )
            if rowcount(status) != 1:
                raise NotFound(f"agent {agent_id} not found")
            return await append_events(
                conn, now, [NewEvent("agent.presence", {"agent": agent_id, "status": presence})]
            )

        return await self._tx(op)

    async def set_capacity(
        self, agent_id: str, capacity: dict[str, int], now: float
    ) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            status = await conn.execute(
                "UPDATE agents SET capacity=$1 WHERE id=$2", dumps(capacity), agent_id
            )
            if rowcount(status) != 1:
                raise NotFound(f"agent {agent_id} not found")
            return await append_events(
                conn,
                now,
                [NewEvent("agent.capacity", {"agent": agent_id, "capacity": capacity})],
            )

        return await self._tx(op)
