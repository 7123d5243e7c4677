"""Routing order `sla`: the store hands waiting conversations over a page at a time,
highest priority, nearest SLA due, oldest, read from its index without a sort — on every
backend of tests/store/test_contract.py."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.store.base import Store, WaitingGroup
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.store.timekeeping import TimeStore
from tests.store.test_contract import BACKENDS, BackendFactory

INSERT = (
    "INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel,"
    " status, queue, priority, created_at, updated_at, required_skills, tags, routing,"
    " sla_due) VALUES ({}, 'k', 'ch', 'email', 'ch', 'open', 'q', {}, {}, 0, '{{}}', '[]',"
    " '{{}}', {})"
)
WAITING = (
    "SELECT id FROM conversations{} WHERE status='open' AND assignee IS NULL AND"
    " channel_kind='email' AND queue='q' AND required_skills='{{}}'"
    " ORDER BY priority DESC, sla_due, created_at, id LIMIT 7"
)
ORDER = "SELECT id FROM conversations ORDER BY priority DESC, sla_due, created_at, id"
# What each backend's query plan says when it sorts instead of reading the index in order.
SORTED = {"sqlite": "TEMP B-TREE", "postgres": "Sort"}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> tuple[str, BackendFactory]:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
    return request.param, BACKENDS[request.param]


async def seed(store: Store, rows: list[tuple[str, int, float, float]]) -> None:
    if isinstance(store, SqliteStore):

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
                " VALUES ('k', NULL, '{}', 0, 0)"
            )
            conn.executemany(INSERT.format("?", "?", "?", "?"), rows)

        await store._tx(op)
        return
    assert isinstance(store, PostgresStore)

    async def pg(conn: Any) -> None:
        await conn.execute(
            "INSERT INTO contacts(id, name, attributes, created_at, updated_at)"
            " VALUES ('k', NULL, '{}', 0, 0)"
        )
        await conn.executemany(INSERT.format("$1", "$2", "$3", "$4"), rows)
        await conn.execute("ANALYZE conversations")

    await store._tx(pg)


async def expected(store: Store) -> tuple[list[str], str]:
    """Every conversation in routing order `sla`, and the plan of reading a page."""
    if isinstance(store, SqliteStore):

        def op(conn: sqlite3.Connection) -> tuple[list[str], str]:
            rows = conn.execute(ORDER).fetchall()
            plan = conn.execute(
                "EXPLAIN QUERY PLAN " + WAITING.format(" INDEXED BY conversations_routable_sla")
            ).fetchall()
            return [r[0] for r in rows], " ".join(str(p[-1]) for p in plan)

        result: tuple[list[str], str] = await store._run(op)
        return result
    assert isinstance(store, PostgresStore)

    async def pg(conn: Any) -> tuple[list[str], str]:
        rows = await conn.fetch(ORDER)
        plan = await conn.fetch("EXPLAIN " + WAITING.format(""))
        return [r[0] for r in rows], " ".join(str(p[0]) for p in plan)

    return await store._read(pg)


async def test_pages_in_sla_order_from_the_index(
    backend: tuple[str, BackendFactory], tmp_path: Path
) -> None:
    name, factory = backend
    store = factory(tmp_path)
    await store.open()
    assert isinstance(store, TimeStore)
    rng = random.Random(12)
    rows = [
        (
            f"c{i:04d}",
            rng.randint(0, 3),
            float(rng.randint(0, 50)),  # ties on purpose
            rng.choice([1e18, float(rng.randint(0, 20))]),  # 1e18: no SLA
        )
        for i in range(500)
    ]
    try:
        await seed(store, rows)
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

        order, plan = await expected(store)
        assert got == order
        assert SORTED[name] not in plan
    finally:
        await store.close()
