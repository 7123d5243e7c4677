"""`switchboard migrate --from sqlite:PATH --to postgresql://...` moves an installation."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.base import DeliveryResult, Identity, InboundMessage
from gateway import cli
from gateway.kpis.figures import StatsQuery, report
from gateway.store import SqliteStore, Store
from gateway.store.base import (
    Claim,
    Classification,
    ConversationFilter,
    IngestRequest,
    OutboundRequest,
    escalation_store,
)
from gateway.store.postgres import PostgresStore

WEEK = 7 * 86400.0
ROOT = Path(__file__).resolve().parents[2]


def migrate_cli(source: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    """`switchboard migrate --from sqlite:… --to postgresql://…` as a user runs it; it
    must succeed."""
    args = ["migrate", "--from", f"sqlite:{source}", "--to", dsn]
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    return run


def request(ext: str, sender: Identity, now: float, **kw: object) -> IngestRequest:
    return IngestRequest(
        "mail",
        "email",
        InboundMessage(external_id=ext, sender=sender, text=f"text {ext}", **kw),  # type: ignore[arg-type]
        lambda attrs: Classification("general", 1),
        now,
        WEEK,
        blobs={f"b_{ext}": ("text/plain", b"\x00raw " + ext.encode())},
        raw_blob=f"b_{ext}",
    )


async def fill(store: Store) -> None:
    """An installation with a bit of everything: assigned, answered, merged, quarantined."""
    await store.sync_agents([("alice", "online", {"default": 5})])
    dana, visitor = Identity("email", "dana@example.com"), Identity("webchat", "v-1")
    first = await store.ingest(request("e1", dana, 1000))
    assert first.conversation is not None
    await store.claim(
        [Claim(first.conversation.id, "alice", "email", 5, "general", "rr", [])], 1001
    )
    reply, _ = await store.add_outbound(
        OutboundRequest(first.conversation.id, "hello Dana", "agent", "alice", 1002)
    )
    await store.outbox_lease(1003, 10, 30)
    await store.outbox_record(reply.id, DeliveryResult.sent("prov-1"), None, 1004)
    await store.add_outbound(
        OutboundRequest(first.conversation.id, "still queued", "agent", "alice", 1005)
    )
    chat = await store.ingest(request("c1", visitor, 1010, extra_identities=[dana]))
    await store.link_verified(visitor, dana, 1020)  # a merge: two open conversations
    assert chat.conversation is not None
    # Escalation's stamps: the chat waits, offered to alice (a unit of her capacity).
    await escalation_store(store).offer_create(
        [(Claim(chat.conversation.id, "alice", "webchat", 5, "general", "rr", []), 1100.0)],
        1025,
    )
    await store.quarantine_add("mail", "message/rfc822", b"bad\x00", "unreadable", 1030)
    await store.kv_set("imap", "uidnext", "42")


async def snapshot(store: Store) -> dict[str, object]:
    convs, _ = await store.list_conversations(ConversationFilter(limit=100))
    return {
        "conversations": [c.to_api() for c in convs],
        "messages": [[m.to_api() for m in await store.messages(c.id)] for c in convs],
        "contact": (await store.find_contact(Identity("webchat", "v-1"))).to_api(),
        "events": [(e.id, e.type, e.data) for e in await store.events_since(0, 1000)],
        "blob": await store.get_blob("b_e1"),
        "quarantine": [i.to_api() for i in (await store.quarantine_list())[0]],
        "kv": await store.kv_get("imap", "uidnext"),
        "agents": await store.agent_states(),
        "loads": (await store.routing_snapshot()).loads,
        "outbox_due": await store.outbox_next_due(),
        "offers": await escalation_store(store).offers(),
        "waits": await escalation_store(store).wait_stamps(1e12, 100),
        "awaiting_reply": await escalation_store(store).awaiting_reply(),
    }


def test_an_installation_moves_to_postgresql_and_a_second_run_changes_nothing(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "switchboard.db"

    async def make() -> dict[str, object]:
        sqlite = SqliteStore(path)
        await sqlite.open()
        try:
            await fill(sqlite)
            return await snapshot(sqlite)
        finally:
            await sqlite.close()

    before = asyncio.run(make())
    run = migrate_cli(path, pg_dsn)
    assert "messages        [##############################] 4/4" in run.stderr
    assert "messages: 4 rows, 4 new" in run.stderr and "events: " in run.stderr

    async def check() -> None:
        pg = PostgresStore(pg_dsn)
        await pg.open()
        try:
            assert await snapshot(pg) == before
            # It goes on where SQLite stopped: the customer's next message joins, the
            # event ids continue, the queued reply is due.
            nxt = await pg.ingest(request("e2", Identity("email", "dana@example.com"), 2000))
            assert not nxt.created
            assert nxt.events[0].id == before["events"][-1][0] + 1  # type: ignore[index]
            [item] = await pg.outbox_lease(2001, 10, 30)
            assert item.text == "still queued" and item.thread_refs == ["prov-1"]
        finally:
            await pg.close()

    asyncio.run(check())
    capsys.readouterr()
    assert cli.main(["migrate", "--from", f"sqlite:{path}", "--to", pg_dsn]) == 0
    again = capsys.readouterr().err
    assert "messages: 4 rows, 0 new" in again
    assert "contacts: 2 rows, 0 new" in again and ", 1 new" not in again


def test_the_kpis_move_with_the_installation(tmp_path: Path, pg_dsn: str) -> None:
    """The KPI rollups outlive the event log: they move with it, and the PostgreSQL fold
    goes on after the last event the SQLite one folded, counting nothing twice."""
    path = tmp_path / "switchboard.db"
    day = StatsQuery(0, 86400, "agent", ZoneInfo("UTC"), 86400)

    async def make() -> dict[str, object]:
        sqlite = SqliteStore(path)
        await sqlite.open()
        try:
            await fill(sqlite)
            await sqlite.resolve(
                (await sqlite.list_conversations(ConversationFilter(limit=1)))[0][0].id,
                "admin",
                None,
                1040,
            )
            assert (await sqlite.stats_fold())[0] > 0
            # The events go (retention); their facts stay.
            assert await sqlite.prune_events(1100, None) > 0
            return report(day, *await sqlite.stats_read(day))
        finally:
            await sqlite.close()

    before = asyncio.run(make())
    assert before["totals"]["conversations"] == 2  # type: ignore[index]
    run = migrate_cli(path, pg_dsn)
    assert "kpi_facts: " in run.stderr and "kpi_" not in run.stderr.split("\n")[0]

    async def check() -> None:
        pg = PostgresStore(pg_dsn)
        await pg.open()
        try:
            assert (await pg.stats_fold())[0] == 0  # nothing folded twice
            assert report(day, *await pg.stats_read(day)) == before
        finally:
            await pg.close()

    asyncio.run(check())


def test_a_missing_file_or_a_wrong_target_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "postgresql://x@127.0.0.1:1/x"
    assert cli.main(["migrate", "--from", f"sqlite:{tmp_path / 'none.db'}", "--to", target]) == 1
    assert "no SQLite store at" in capsys.readouterr().err
    assert cli.main(["migrate", "--from", str(tmp_path / "x.db"), "--to", target]) == 2
    assert "sqlite:PATH" in capsys.readouterr().err
    assert cli.main(["migrate", "--from", "sqlite:x.db", "--to", "mysql://x"]) == 2
    assert "PostgreSQL DSN" in capsys.readouterr().err


def test_nul_characters_an_older_version_stored_do_not_stop_the_move(
    tmp_path: Path, pg_dsn: str
) -> None:
    """SQLite keeps a NUL (U+0000) that versions before the ingest dropped them stored;
    PostgreSQL text cannot hold one. The move drops it, as the ingest does now, instead of
    failing half-way."""
    path = tmp_path / "switchboard.db"

    async def make() -> None:
        sqlite = SqliteStore(path)
        await sqlite.open()
        try:
            await fill(sqlite)
        finally:
            await sqlite.close()

    asyncio.run(make())
    with sqlite3.connect(path) as db:  # as an older version stored them
        db.execute("UPDATE messages SET text = ? WHERE external_id = 'e1'", ("hello\x00 there",))
        db.execute("UPDATE contacts SET name = ?", ("Da\x00na",))
    migrate_cli(path, pg_dsn)

    async def check() -> None:
        pg = PostgresStore(pg_dsn)
        await pg.open()
        try:
            convs, _ = await pg.list_conversations(ConversationFilter(limit=10))
            texts = [m.text for c in convs for m in await pg.messages(c.id)]
            assert "hello there" in texts, texts
            names = {(await pg.get_contact(c.contact_id)).name for c in convs}
            assert "Dana" in names, names
        finally:
            await pg.close()

    asyncio.run(check())
