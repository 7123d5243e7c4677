"""The SQLite store's part in business hours, SLAs and the visible wait queue (see
gateway/store/timekeeping.py). Mixed into `SqliteStore`, which provides `_tx`, `_run`,
`_events` and `_conv`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from gateway.model import Event, NewEvent, dumps, loads, priority_name
from gateway.store.base import WaitingConversation, WaitingGroup
from gateway.store.timekeeping import (
    NO_DUE,
    SLA_EVENTS,
    SlaFacts,
    SlaPlan,
    SlaPlanner,
    SlaWaitingKey,
    TimeStore,
    WaitingSeat,
)

_TYPES = ",".join(f"'{t}'" for t in SLA_EVENTS)


class SqliteTime(TimeStore):
    _tx: Callable[..., Any]
    _run: Callable[..., Any]
    _events: Callable[[sqlite3.Connection, float, list[NewEvent]], list[Event]]

    # --- SLA clocks ------------------------------------------------------------------------
    async def sla_next_due(self, now: float) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            cursor = conn.execute("SELECT event_id FROM sla_cursor").fetchone()[0]
            changed = conn.execute(
                f"SELECT 1 FROM events WHERE id > ? AND type IN ({_TYPES}) LIMIT 1", (cursor,)
            ).fetchone()
            if changed is not None:
                return now
            row = conn.execute("SELECT MIN(next_at) FROM sla WHERE next_at IS NOT NULL").fetchone()
            return None if row[0] is None else float(row[0])

        result: float | None = await self._run(op)
        return result

    async def sla_fire(self, now: float, planner: SlaPlanner, batch: int = 1000) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            cursor = conn.execute("SELECT event_id FROM sla_cursor").fetchone()[0]
            rows = conn.execute(
                f"SELECT id, data FROM events WHERE id > ? AND type IN ({_TYPES})"
                " ORDER BY id LIMIT ?",
                (cursor, batch),
            ).fetchall()
            if len(rows) < batch:
                top = conn.execute("SELECT MAX(id) FROM events").fetchone()[0] or cursor
            else:
                top = rows[-1][0]
            ids: dict[str, None] = {}
            for _, data in rows:
                d = loads(data)
                cid = d.get("conversation_id") or (d.get("conversation") or {}).get("id")
                if cid:
                    ids[cid] = None
            for (cid,) in conn.execute(
                "SELECT conversation_id FROM sla WHERE next_at IS NOT NULL AND next_at <= ?",
                (now,),
            ):
                ids[cid] = None
            new: list[NewEvent] = []
            for cid in ids:
                new.extend(self._sla_update(conn, cid, now, planner))
            conn.execute("UPDATE sla_cursor SET event_id=? WHERE id=1", (top,))
            return self._events(conn, now, new)

        events: list[Event] = await self._tx(op)
        return events

    @staticmethod
    def _sla_facts(conn: sqlite3.Connection, cid: str) -> SlaFacts | None:
        row = conn.execute(
            "SELECT c.queue, c.priority, c.status, c.created_at, c.resolved_at, k.attributes"
            " FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE c.id=?",
            (cid,),
        ).fetchone()
        if row is None:
            return None
        inbound: list[float] = []
        replies: list[float] = []
        for direction, at in conn.execute(
            "SELECT direction, created_at FROM messages WHERE conversation_id=?"
            " AND (direction='in' OR sender_type='agent')",
            (cid,),
        ):
            (inbound if direction == "in" else replies).append(float(at))
        status = row[2]
        return SlaFacts(
            cid,
            row[0],
            int(row[1]),
            status,
            float(row[3]),
            row[4] if status in ("resolved", "closed") else None,
            loads(row[5]) if row[5] else {},
            inbound,
            replies,
        )

    def _sla_update(
        self, conn: sqlite3.Connection, cid: str, now: float, planner: SlaPlanner
    ) -> list[NewEvent]:
        facts = self._sla_facts(conn, cid)
        if facts is None:
            return []
        row = conn.execute("SELECT fired FROM sla WHERE conversation_id=?", (cid,)).fetchone()
        fired: dict[str, dict[str, Any]] = loads(row[0]) if row else {}
        plan = planner(facts, fired)
        if plan is None:
            conn.execute("DELETE FROM sla WHERE conversation_id=?", (cid,))
            conn.execute(
                "UPDATE conversations SET sla_due=? WHERE id=? AND sla_due != ?",
                (NO_DUE, cid, NO_DUE),
            )
            return []
        new: list[NewEvent] = []
        later: list[float] = []
        for target, kind, at in plan.alarms:
            if at > now:
                later.append(at)
                continue
            mark = fired.setdefault(target, {})
            since = plan.targets.get(target, {}).get("since")
            if target == "next_response" and mark.get("since") != since:
                mark.clear()
            mark["since"] = since
            if kind in mark:
                continue  # fired already (a warning raced a breach in the same pass)
            mark[kind] = now
            data: dict[str, Any] = {
                "conversation_id": cid,
                "target": target,
                "policy": plan.policy,
                "due_at": plan.targets.get(target, {}).get("due_at"),
                "queue": facts.queue,
                "priority": priority_name(facts.priority),
            }
            if kind == "breached":
                mark.setdefault("warning", now)
                data["actions"] = self._sla_breach_actions(conn, cid, facts, plan, now, new)
            new.append(NewEvent(f"sla.{kind}", data))
        next_at = min(later) if later else None
        conn.execute(
            "INSERT INTO sla(conversation_id, policy, targets, fired, next_at, updated_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(conversation_id) DO UPDATE SET"
            " policy=excluded.policy, targets=excluded.targets, fired=excluded.fired,"
            " next_at=excluded.next_at, updated_at=excluded.updated_at",
            (cid, plan.policy, dumps(plan.targets), dumps(fired), next_at, now),
        )
        nearest = NO_DUE if plan.nearest is None else plan.nearest
        conn.execute(
            "UPDATE conversations SET sla_due=? WHERE id=? AND sla_due != ?",
            (nearest, cid, nearest),
        )
        return new

    @staticmethod
    def _sla_breach_actions(
        conn: sqlite3.Connection,
        cid: str,
        facts: SlaFacts,
        plan: SlaPlan,
        now: float,
        new: list[NewEvent],
    ) -> list[str]:
        done: list[str] = []
        if plan.bump_priority and facts.priority < 3:
            facts.priority += 1
            conn.execute(
                "UPDATE conversations SET priority=?, updated_at=? WHERE id=?",
                (facts.priority, now, cid),
            )
            done.append(f"priority raised to {priority_name(facts.priority)}")
        if plan.move_to and plan.move_to != facts.queue:
            cur = conn.execute(
                "UPDATE conversations SET queue=?, updated_at=? WHERE id=? AND status='open'"
                " AND assignee IS NULL",
                (plan.move_to, now, cid),
            )
            if cur.rowcount:
                new.append(
                    NewEvent(
                        "conversation.transferred",
                        {
                            "conversation_id": cid,
                            "from_queue": facts.queue,
                            "queue": plan.move_to,
                            "by": "sla",
                        },
                    )
                )
                done.append(f"moved from queue {facts.queue} to {plan.move_to}")
                facts.queue = plan.move_to
        return done

    async def sla_of(self, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            if not conversation_ids:
                return {}
            marks = ",".join("?" * len(conversation_ids))
            out: dict[str, dict[str, Any]] = {}
            for cid, policy, targets, fired in conn.execute(
                f"SELECT conversation_id, policy, targets, fired FROM sla"
                f" WHERE conversation_id IN ({marks})",
                conversation_ids,
            ):
                out[cid] = {"policy": policy, "targets": loads(targets), "fired": loads(fired)}
            return out

        result: dict[str, dict[str, Any]] = await self._run(op)
        return result

    # --- routing order `sla` ---------------------------------------------------------------
    async def waiting_page_sla(
        self, group: WaitingGroup, after: SlaWaitingKey | None, limit: int
    ) -> list[WaitingConversation]:
        def op(conn: sqlite3.Connection) -> list[WaitingConversation]:
            sql = (
                "SELECT id, queue, priority, required_skills, channel_kind, created_at, sla_due"
                " FROM conversations INDEXED BY conversations_routable_sla"
                " WHERE status='open' AND assignee IS NULL"
                " AND channel_kind=? AND queue=? AND required_skills=?"
            )
            args: list[Any] = [group.channel_kind, group.queue, group.skills_key]
            if after is not None:
                sql += (
                    " AND (priority < ?4 OR (priority = ?4 AND (sla_due > ?5 OR (sla_due = ?5 AND"
                    " (created_at > ?6 OR (created_at = ?6 AND id > ?7))))))"
                )
                args += list(after)
            sql += " ORDER BY priority DESC, sla_due, created_at, id LIMIT ?"
            args.append(limit)
            return [
                WaitingConversation(r[0], r[1], r[2], loads(r[3]), r[4], r[5], sla_due=r[6])
                for r in conn.execute(sql, args)
            ]

        result: list[WaitingConversation] = await self._run(op)
        return result

    # --- the customer-facing wait queue ----------------------------------------------------
    async def notice_once(self, conversation_id: str, kind: str, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO notices(conversation_id, kind, at) VALUES (?,?,?)",
                (conversation_id, kind, now),
            )
            return bool(cur.rowcount)

        result: bool = await self._tx(op)
        return result

    async def waiting_seats(self, channel_kinds: list[str], limit: int) -> list[WaitingSeat]:
        def op(conn: sqlite3.Connection) -> list[WaitingSeat]:
            if not channel_kinds:
                return []
            marks = ",".join("?" * len(channel_kinds))
            out: list[WaitingSeat] = []
            seen: dict[tuple[str, str], int] = {}
            for r in conn.execute(
                "SELECT c.id, c.queue, c.contact_id, c.last_channel, c.reply_kind, c.reply_address,"
                " c.created_at, k.attributes, c.channel_kind,"
                " (SELECT m.automated FROM messages m WHERE m.conversation_id = c.id"
                "  AND m.direction = 'in' ORDER BY m.created_at DESC LIMIT 1)"
                " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
                f" WHERE c.status='open' AND c.assignee IS NULL AND c.channel_kind IN ({marks})"
                " ORDER BY c.channel_kind, c.queue, c.priority DESC, c.created_at, c.id LIMIT ?",
                [*channel_kinds, limit],
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

        result: list[WaitingSeat] = await self._run(op)
        return result

    async def noticed(self, conversation_ids: list[str], kind: str) -> set[str]:
        def op(conn: sqlite3.Connection) -> set[str]:
            out: set[str] = set()
            for i in range(0, len(conversation_ids), 500):
                chunk = conversation_ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT conversation_id FROM notices WHERE kind=? AND conversation_id"
                        f" IN ({marks})",
                        [kind, *chunk],
                    )
                )
            return out

        result: set[str] = await self._run(op)
        return result
