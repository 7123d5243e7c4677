"""PostgreSQL-specific behaviour the contract suite cannot express: several store objects on
one database (as several gateway instances are), racing for the same rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from connectors.base import DeliveryResult, Identity, InboundMessage
from gateway.store import Conflict
from gateway.store.base import (
    Claim,
    Classification,
    ConversationFilter,
    IngestRequest,
    OutboundRequest,
)
from gateway.store.postgres import PostgresStore
from gateway.store.postgres.conversations import list_query
from gateway.store.postgres.migrations import MIGRATIONS
from gateway.store.postgres.pool import PING_TIMEOUT
from tests.pg import PgServer

WEEK = 7 * 86400.0


def request(ext: str, sender: str, now: float = 1000.0, channel: str = "mail") -> IngestRequest:
    return IngestRequest(
        channel,
        "email",
        InboundMessage(external_id=ext, sender=Identity("email", sender), text="hi"),
        lambda attrs: Classification("general", 1),
        now,
        WEEK,
    )


@pytest.fixture
async def instances(pg_dsn: str) -> AsyncIterator[list[PostgresStore]]:
    """Three store objects on one fresh database: three gateway instances."""
    stores = [PostgresStore(pg_dsn, pool_size=4, instance=f"i{n}") for n in range(3)]
    for store in stores:
        await store.open()
    await stores[0].sync_agents([("alice", "online", {"default": 3}), ("bob", "online", {})])
    yield stores
    for store in stores:
        await store.close()


async def test_instances_starting_together_on_an_empty_database_migrate_once(
    pg_dsn: str,
) -> None:
    """Today two instances started together on one SQLite file fail with "table contacts
    already exists"; on PostgreSQL one migrates and the others wait for it."""
    stores = [PostgresStore(pg_dsn, pool_size=2) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        conn = await asyncpg.connect(pg_dsn)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
        assert sorted(versions) == [v for v, _ in MIGRATIONS]
        # Each works on the one schema.
        await stores[0].kv_set("ns", "k", "v")
        assert [await s.kv_get("ns", "k") for s in stores] == ["v"] * 6
    finally:
        for s in stores:
            await s.close()


async def test_claims_from_several_instances_never_exceed_capacity(
    instances: list[PostgresStore],
) -> None:
    ids = [
        (await instances[0].ingest(request(f"c{i}", f"c{i}@example.com"))).conversation
        for i in range(12)
    ]
    # Every instance tries to give every conversation to alice (capacity 3) at once.
    results = await asyncio.gather(
        *(
            store.claim([Claim(c.id, "alice", "email", 3, "general", "rr", [])], 2000)
            for store in instances
            for c in ids
        )
    )
    claimed = [cid for done, _ in results for cid in done]
    assert len(claimed) == 3 and len(set(claimed)) == 3  # capacity, and each once
    snap = await instances[1].routing_snapshot()
    assert snap.loads == {("alice", "email"): 3}
    assert len(snap.waiting) == 9


async def test_a_capacity_lowered_by_another_instance_holds_at_commit(
    instances: list[PostgresStore],
) -> None:
    one, two, _ = instances
    convs = [
        (await one.ingest(request(f"d{i}", f"d{i}@example.com"))).conversation.id for i in range(3)
    ]
    await two.set_capacity("alice", {"default": 1}, 1500)
    claimed, _ = await one.claim(
        [Claim(c, "alice", "email", 3, "general", "rr", []) for c in convs], 2000
    )
    assert len(claimed) == 1


async def test_one_customer_writing_to_several_instances_gets_one_conversation(
    instances: list[PostgresStore],
) -> None:
    """A new customer's messages arrive on three instances at the same moment: one contact,
    one conversation, every message in it."""
    outcomes = await asyncio.gather(
        *(
            instances[i % 3].ingest(request(f"m{i}", "new@example.com", now=1000.0 + i))
            for i in range(12)
        )
    )
    assert len({o.contact_id for o in outcomes}) == 1
    assert len({o.conversation.id for o in outcomes if o.conversation}) == 1
    assert sum(o.created for o in outcomes) == 1
    conv_id = outcomes[0].conversation.id  # type: ignore[union-attr]
    assert len(await instances[0].messages(conv_id)) == 12


async def test_a_redelivery_taken_by_several_instances_is_stored_once(
    instances: list[PostgresStore],
) -> None:
    outcomes = await asyncio.gather(
        *(store.ingest(request("same", "dup@example.com")) for store in instances for _ in "ab")
    )
    assert sum(not o.duplicate for o in outcomes) == 1
    assert len({o.message.id for o in outcomes if o.message}) == 1
    conv_id = outcomes[0].conversation.id  # type: ignore[union-attr]
    assert len(await instances[2].messages(conv_id)) == 1


async def test_the_schema_refuses_a_second_open_conversation_and_a_second_message(
    instances: list[PostgresStore],
) -> None:
    """The invariants are constraints, not only a habit of the code that writes: one open
    conversation per contact, one message per channel and external id, no negative load,
    no claim over the agent's capacity."""
    out = await instances[0].ingest(request("x1", "one@example.com"))
    conv = out.conversation
    assert conv is not None
    conn = await asyncpg.connect(instances[0].dsn)
    try:
        with pytest.raises(asyncpg.exceptions.UniqueViolationError):
            await conn.execute(
                "INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel,"
                " status, queue, priority, created_at, updated_at, opened_for)"
                " VALUES ('cv_second', $1, 'mail', 'email', 'mail', 'open', 'general', 1, 1, 1,"
                " $1)",
                conv.contact_id,
            )
        # A resolved one next to it is fine; reopening it through the store while the
        # other is active is a conflict, and possible once that one is resolved.
        await conn.execute(
            "INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel,"
            " status, queue, priority, created_at, updated_at, resolved_at, opened_for)"
            " VALUES ('cv_old', $1, 'mail', 'email', 'mail', 'resolved', 'general', 1, 1, 1,"
            " 900, $1)",
            conv.contact_id,
        )
        with pytest.raises(Conflict, match="another active conversation"):
            await instances[1].reopen("cv_old", "admin", 1100.0)
        await instances[1].resolve(conv.id, "admin", None, 1200.0)
        reopened, _ = await instances[2].reopen("cv_old", "admin", 1300.0)
        assert reopened.status == "open"
        await instances[2].resolve("cv_old", "admin", None, 1400.0)
        await instances[2].reopen(conv.id, "admin", 1500.0)
        with pytest.raises(asyncpg.exceptions.UniqueViolationError):
            await conn.execute(
                "INSERT INTO messages(id, conversation_id, direction, channel, sender_type,"
                " text, created_at, updated_at, external_id)"
                " VALUES ('msg_second', $1, 'in', 'mail', 'contact', 'x', 1, 1, 'x1')",
                conv.id,
            )
        with pytest.raises(asyncpg.exceptions.CheckViolationError):
            await conn.execute(
                "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES ('alice', 'x', -1)"
            )
        # A router's claim over the agent's capacity: bob has none.
        with pytest.raises(asyncpg.exceptions.CheckViolationError, match="capacity"):
            await conn.execute(
                "UPDATE conversations SET assignee='bob', status='assigned', claimed=TRUE"
                " WHERE id=$1",
                conv.id,
            )
        # Manual assignments may be forced over capacity.
        await conn.execute(
            "UPDATE conversations SET assignee='bob', status='assigned' WHERE id=$1", conv.id
        )
    finally:
        await conn.close()


async def test_instances_lease_different_outbox_items_and_say_who_holds_them(
    instances: list[PostgresStore],
) -> None:
    one, two, three = instances
    queued = []
    for i in range(9):
        conv = (await one.ingest(request(f"o{i}", f"o{i}@example.com"))).conversation
        assert conv is not None
        msg, _ = await one.add_outbound(OutboundRequest(conv.id, "reply", "agent", "alice", 1100))
        queued.append(msg.id)
    leased = await asyncio.gather(*(s.outbox_lease(1200, 9, 30) for s in instances))
    taken = [item.message_id for items in leased for item in items]
    assert sorted(taken) == sorted(queued)  # every item once, none twice
    conn = await asyncpg.connect(one.dsn)
    try:
        holders = dict(await conn.fetch("SELECT message_id, holder FROM outbox"))
        until = {r[0] for r in await conn.fetch("SELECT DISTINCT lease_until FROM outbox")}
    finally:
        await conn.close()
    for store, items in zip(instances, leased, strict=True):
        assert {holders[item.message_id] for item in items} <= {store.instance}
    assert until == {1230.0}
    # A restarting instance drops only its own leases, never a live instance's.
    released = await three.outbox_release_all()
    assert released == len(leased[2])
    again = await three.outbox_lease(1201, 9, 30)
    assert {i.message_id for i in again} == {i.message_id for i in leased[2]}
    # A dead instance's items are taken over when its lease runs out.
    assert await two.outbox_lease(1229, 9, 30) == []
    taken_over = await two.outbox_lease(1232, 9, 30)
    assert {i.message_id for i in taken_over} == set(queued)
    for item in taken_over:
        await two.outbox_record(
            item.message_id, DeliveryResult.sent(f"p-{item.message_id}"), None, 1233
        )
    assert await one.outbox_next_due() is None


async def test_a_failing_classifier_fails_only_a_message_that_opens_a_conversation(
    instances: list[PostgresStore],
) -> None:
    def broken(attrs: dict[str, str]) -> Classification:
        raise ValueError("rules exploded")

    first = await instances[0].ingest(request("f1", "known@example.com"))
    joining = request("f2", "known@example.com", now=1001.0)
    joining.classify = broken
    joined = await instances[1].ingest(joining)
    assert joined.conversation is not None and first.conversation is not None
    assert joined.conversation.id == first.conversation.id and not joined.created
    opening = request("f3", "new@example.com", now=1002.0)
    opening.classify = broken
    with pytest.raises(ValueError, match="rules exploded"):
        await instances[2].ingest(opening)


async def test_a_lease_of_the_key_value_store_goes_to_one_instance(
    instances: list[PostgresStore],
) -> None:
    won = await asyncio.gather(
        *(s.kv_lease("imap", "inbox", s.instance, 10, 100) for s in instances for _ in "ab")
    )
    assert sum(won) >= 1
    winners = {
        s.instance for s, ok in zip([s for s in instances for _ in "ab"], won, strict=True) if ok
    }
    assert len(winners) == 1
    [winner] = winners
    others = [s for s in instances if s.instance != winner]
    assert not await others[0].kv_lease("imap", "inbox", others[0].instance, 10, 105)
    assert await others[0].kv_lease("imap", "inbox", others[0].instance, 10, 110)  # expired


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("status", "conversations_list_status"),
        ("queue", "conversations_list_queue"),
        ("assignee", "conversations_list_assignee"),
        ("channel", "conversations_list_channel"),
        ("contact_id", "conversations_list_contact"),
        (None, "conversations_pkey"),
    ],
)
async def test_each_conversation_filter_reads_an_index_in_order(
    pg_dsn: str, field: str | None, index: str
) -> None:
    """`GET /v1/conversations?{field}=…` can be a range read of its index, newest first,
    with no sort, on the first page and after a cursor. (Scans and sorts are discouraged:
    on an empty table the planner would rightly prefer them; what is tested is that an
    index serves each filter in order.)"""
    store = PostgresStore(pg_dsn, pool_size=1)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await conn.execute(f"SET {setting} = off")
        for cursor in (None, "cv_0123456789"):
            flt = ConversationFilter(cursor=cursor, limit=50)
            if field is not None:
                setattr(flt, field, "x")
            sql, args = list_query(flt)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
            assert f"Index Scan Backward using {index} on conversations" in plan, plan
            assert "Sort" not in plan, plan
    finally:
        await conn.close()


async def test_ping_says_no_soon_when_the_database_is_gone() -> None:
    """What /readyz reports: a database that stopped answering is `False`, in seconds."""
    server = PgServer()
    await asyncio.to_thread(server.start)
    store = PostgresStore(server.dsn, pool_size=2)
    try:
        await store.open()
        assert await store.ping()
        await asyncio.to_thread(server.stop)
        started = asyncio.get_running_loop().time()
        assert not await store.ping()
        assert asyncio.get_running_loop().time() - started < PING_TIMEOUT + 1
    finally:
        await store.close()
        await asyncio.to_thread(server.stop)
