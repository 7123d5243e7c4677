"""The escalation stamps on PostgreSQL, kept where the events are written.

What the SQLite store's `stamps` trigger (its migration 13) does on each event, done here
by `append_events` in the same transaction, before it takes the event log's head: a
conversation starts waiting; is assigned (its wait ends); is assigned, moved or resolved
while offered (the offer is withdrawn, its unit of capacity given back); an agent's
presence changes (since when); an agent replies. Done before the head, these row locks
are never waited on while holding the lock every writer of events queues on.
"""

from __future__ import annotations

from gateway.domain.escalation import (
    STAMPED,
    WAIT_STARTS,
    WITHDRAWS,
    event_conversation,
    wait_reason,
)
from gateway.model import NewEvent
from gateway.store.postgres.pool import Conn


async def stamp_events(conn: Conn, now: float, new: list[NewEvent]) -> None:
    """Keep the stamps that follow `new`, in order, as the events are appended at `now`."""
    for ev in new:
        if ev.type not in STAMPED:
            continue  # most events: nothing to do, no statement
        if ev.type == "message.queued":
            await conn.execute(
                "INSERT INTO agent_replies(conversation_id, agent_id, at)"
                " SELECT conversation_id, sender_id, created_at FROM messages WHERE id = $1"
                " AND sender_type = 'agent' AND sender_id IS NOT NULL"
                " ON CONFLICT(conversation_id) DO UPDATE"
                " SET agent_id = excluded.agent_id, at = excluded.at",
                str(ev.data.get("message_id")),
            )
            continue
        if ev.type == "agent.presence":
            # Since when: only a change of presence moves it.
            await conn.execute(
                "INSERT INTO presence_stamps(agent_id, presence, since) VALUES ($1, $2, $3)"
                " ON CONFLICT(agent_id) DO UPDATE SET presence = excluded.presence,"
                " since = excluded.since WHERE presence_stamps.presence <> excluded.presence",
                ev.data["agent"],
                ev.data["status"],
                now,
            )
            continue
        cid = event_conversation(ev.data)
        if cid is None:
            continue
        if ev.type in WAIT_STARTS:
            await conn.execute(
                "INSERT INTO waits(conversation_id, reason, since, step, state, due)"
                " VALUES ($1, $2, $3, 0, 'new', NULL) ON CONFLICT(conversation_id) DO UPDATE"
                " SET reason = excluded.reason, since = excluded.since, step = 0,"
                " state = 'new', due = NULL",
                cid,
                wait_reason(ev.type),
                now,
            )
        if ev.type == "conversation.assigned":
            await conn.execute(
                "UPDATE waits SET state = 'idle', due = NULL WHERE conversation_id = $1", cid
            )
        if ev.type in WITHDRAWS:
            # The pending offer is withdrawn and its unit of capacity given back, at once.
            await conn.execute(
                "WITH w AS (UPDATE offers SET status = 'withdrawn', answered_at = $2"
                " WHERE conversation_id = $1 AND status = 'pending'"
                " RETURNING agent_id, channel_kind)"
                " UPDATE agent_load l SET n = l.n - 1 FROM w"
                " WHERE l.agent_id = w.agent_id AND l.channel_kind = w.channel_kind",
                cid,
                now,
            )
