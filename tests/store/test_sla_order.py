"""Routing order `sla`: the store hands waiting conversations over a page at a time,
highest priority, nearest SLA due, oldest, read from its index without a sort."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from gateway.store.base import WaitingGroup
from gateway.store.sqlite import SqliteStore


async def test_pages_in_sla_order_from_the_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    rng = random.Random(12)

    def seed(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
            " VALUES ('k', NULL, '{}', 0, 0)"
        )
        for i in range(500):
            conn.execute(
                "INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel,"
                " status, queue, priority, created_at, updated_at, required_skills, tags, routing,"
                " sla_due) VALUES (?, 'k', 'ch', 'email', 'ch', 'open', 'q', ?, ?, 0, '{}', '[]',"
                " '{}', ?)",
                (
                    f"c{i:04d}",
                    rng.randint(0, 3),
                    float(rng.randint(0, 50)),  # ties on purpose
                    rng.choice([1e18, float(rng.randint(0, 20))]),  # 1e18: no SLA
                ),
            )

    try:
        await store._tx(seed)
        group = WaitingGroup("email", "q", {}, "{}")
        got: list[str] = []
        after = None
        while True:
            page = await store.waiting_page_sla(group, after, 7)
            got += [w.id for w in page]
            if len(page) < 7:
                break
            last = page[-1]
            after = (last.priority, last.sla_due, last.created_at, last.id)

        def expected(conn: sqlite3.Connection) -> tuple[list[str], str]:
            rows = conn.execute(
                "SELECT id FROM conversations ORDER BY priority DESC, sla_due, created_at, id"
            ).fetchall()
            plan = conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM conversations INDEXED BY"
                " conversations_routable_sla WHERE status='open' AND assignee IS NULL AND"
                " channel_kind='email' AND queue='q' AND required_skills='{}'"
                " ORDER BY priority DESC, sla_due, created_at, id LIMIT 7"
            ).fetchall()
            return [r[0] for r in rows], " ".join(str(p[-1]) for p in plan)

        order, plan = await store._run(expected)
        assert got == order
        assert "TEMP B-TREE" not in plan
    finally:
        await store.close()
