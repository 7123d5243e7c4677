"""The event log is the truth: every stream reads it from its cursor, woken by the bus,
so an event committed by another writer (another process on the same database) is never
skipped, an event is never sent twice, and a cursor that fell off the pruned log is told
so."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.store import SqliteStore
from tests.gateway.conftest import ADMIN, SECRET, Receiver, base_config, wait_for


async def _read_sse(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    """The next `n` stored events of an SSE stream (comments and live-only ones skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        lines = chunk.decode().strip().split("\n")
        data = [ln[len("data: ") :] for ln in lines if ln.startswith("data: ")]
        if data:
            event = json.loads(data[0])
            if event["id"] is not None:
                out.append(event)
    return out


async def test_stream_shows_an_event_committed_by_another_writer(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """Another writer on the same database (a second instance, a CLI) commits an event this
    process never published: the live stream still shows it, in order, once."""
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    other = SqliteStore(tmp_path / "db.sqlite")
    await other.open()
    try:
        headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
        async with client.http.get(f"{client.base}/v1/events", headers=headers) as resp:
            assert resp.status == 200
            await asyncio.sleep(0.2)  # the stream is live
            await other.set_presence("bob", "away", gw.clock())  # not on this bus
            await client.call("PUT", "/v1/agents/alice/presence", json={"status": "away"})
            got = await _read_sse(resp, 2)
        assert [(e["type"], e["data"]["agent"]) for e in got] == [
            ("agent.presence", "bob"),
            ("agent.presence", "alice"),
        ]
        assert got[1]["id"] == got[0]["id"] + 1
    finally:
        await other.close()


async def test_stream_that_falls_behind_is_not_cut_off(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """A consumer that lags far behind the live events still gets every one, from the log."""
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with client.http.get(f"{client.base}/v1/events", headers=headers) as resp:
        await asyncio.sleep(0.2)
        first = await gw.store.last_event_id()
        for i in range(30):  # many more events than the stream reads before it is woken
            gw.publish(await gw.store.set_presence("bob", ("away", "online")[i % 2], gw.clock()))
        got = await _read_sse(resp, 30)
    assert [e["id"] for e in got] == list(range(first + 1, first + 31))


def _draw_id(path: Path) -> tuple[sqlite3.Connection, int]:
    """A second writer that draws its event id before committing (as a PostgreSQL
    sequence does): the id is taken now, the event commits later."""
    late = sqlite3.connect(path, isolation_level=None)
    late.execute("BEGIN IMMEDIATE")
    row = late.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
    drawn = (0 if row is None else int(row[0])) + 1
    late.execute("INSERT OR REPLACE INTO sqlite_sequence(name, seq) VALUES ('events', ?)", (drawn,))
    late.execute("COMMIT")
    return late, drawn


def _commit_late(late: sqlite3.Connection, drawn: int, at: float) -> None:
    late.execute(
        "INSERT INTO events(id, type, at, data) VALUES (?, 'agent.presence', ?, ?)",
        (drawn, at, json.dumps({"agent": "carol", "status": "away"})),
    )
    late.close()


async def test_stream_delivers_a_late_commit_with_a_lower_id_in_order(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """Another writer draws id N, this gateway commits N+1 and publishes it, then the other
    writer commits N. The stream shows N then N+1, once each."""
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with client.http.get(f"{client.base}/v1/events", headers=headers) as resp:
        await asyncio.sleep(0.2)
        late, drawn = _draw_id(tmp_path / "db.sqlite")
        await client.call("PUT", "/v1/agents/alice/presence", json={"status": "away"})
        await asyncio.sleep(0.3)  # the stream was woken, and holds N+1 back
        _commit_late(late, drawn, gw.clock())
        await client.call("PUT", "/v1/agents/bob/presence", json={"status": "away"})
        got = await _read_sse(resp, 3)
    assert [(e["id"], e["data"]["agent"]) for e in got] == [
        (drawn, "carol"),
        (drawn + 1, "alice"),
        (drawn + 2, "bob"),
    ]


async def test_webhook_delivers_a_late_commit_with_a_lower_id_in_order(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [
        {
            "url": receiver.url,
            "secret": SECRET,
            "allow_private_networks": True,
            "events": ["agent.*"],
        }
    ]
    gw, client = await gateway_factory(cfg)
    late, drawn = _draw_id(tmp_path / "db.sqlite")
    await client.call("PUT", "/v1/agents/alice/presence", json={"status": "away"})
    await asyncio.sleep(0.3)
    _commit_late(late, drawn, gw.clock())
    await client.call("PUT", "/v1/agents/bob/presence", json={"status": "away"})
    await wait_for(lambda: len(receiver.bodies()) >= 3, timeout=10)
    await asyncio.sleep(0.2)  # nothing more comes
    assert [(b["id"], b["data"]["agent"]) for b in receiver.bodies()] == [
        (drawn, "carol"),
        (drawn + 1, "alice"),
        (drawn + 2, "bob"),
    ]


async def test_a_cursor_older_than_the_log_gets_410_with_the_oldest_id(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["events"] = {"max_events": 3}
    gw, client = await gateway_factory(cfg)
    for i in range(6):
        await client.call(
            "PUT", "/v1/agents/bob/presence", json={"status": ("away", "online")[i % 2]}
        )
    assert await gw.prune_events() > 0
    last = await gw.store.last_event_id()
    oldest = last - 2
    sse = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    for query, extra in [(f"?since={oldest - 2}", {}), ("?since=0", {"Last-Event-ID": "1"})]:
        async with client.http.get(f"{client.base}/v1/events{query}", headers=sse | extra) as resp:
            body = await resp.json()
        assert resp.status == 410, body
        assert body["error"]["code"] == "cursor_expired"
        assert body["error"]["details"] == {"oldest_id": oldest}
    # Right before the oldest kept event is still a place to resume from.
    async with client.http.get(f"{client.base}/v1/events?since={oldest - 1}", headers=sse) as resp:
        assert resp.status == 200
        got = await _read_sse(resp, 3)
    assert [e["id"] for e in got] == [oldest, oldest + 1, oldest + 2]


async def test_a_webhook_whose_cursor_fell_off_resumes_at_the_oldest_and_says_so_once(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [
        {
            "url": receiver.url,
            "secret": SECRET,
            "allow_private_networks": True,
            "events": ["agent.*"],
        }
    ]
    gw, _ = await gateway_factory(cfg)
    await gw.stop()
    # While the gateway is down, another writer adds events and retention prunes some.
    other = SqliteStore(tmp_path / "db.sqlite")
    await other.open()
    for i in range(6):
        await other.set_presence("bob", ("away", "online")[i % 2], time.time())
    await other.prune_events(0.0, 2)
    kept = [e.id for e in await other.events_since(0, 100)]
    await other.close()
    await gateway_factory(cfg)
    await wait_for(lambda: len(receiver.bodies()) >= 2, timeout=10)
    await asyncio.sleep(0.2)
    assert [b["id"] for b in receiver.bodies()] == kept
    fell = [r for r in caplog.records if "fell behind the event log" in r.getMessage()]
    assert len(fell) == 1 and fell[0].levelno == logging.WARNING


async def test_the_log_keeps_ids_and_the_stream_still_shows_whole_messages(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """`message.received` and `message.queued` are stored with the message's id only (the
    message is in the messages table); the stream shows them as before, message and all,
    as it was when the event happened."""
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    text = "Please refund my invoice " * 40
    _, body = await client.inbound("slim-1", text)
    conv_id = body["conversation_id"]
    _, reply = await client.call(
        "POST", f"/v1/conversations/{conv_id}/messages", json={"text": "On its way"}
    )
    # the reply is attempted (the test's outbound URL refuses it): its status moves on
    await wait_for(lambda: client.message_with_status(conv_id, reply["id"], "failed"), 15)
    sse = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with client.http.get(f"{client.base}/v1/events?since=0", headers=sse) as resp:
        got = await _read_sse(resp, 5)
    by_type = {e["type"]: e["data"] for e in got}
    received, queued = by_type["message.received"], by_type["message.queued"]
    assert received["conversation_id"] == conv_id and received["contact_id"]
    assert received["message"]["id"] == body["message_id"]
    assert received["message"]["text"] == text and received["message"]["direction"] == "in"
    assert queued["conversation_id"] == conv_id
    assert queued["message"] == reply  # as the reply was answered: queued, not failed
    stored = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        sizes = dict(
            stored.execute(
                "SELECT type, LENGTH(data) FROM events WHERE type IN "
                "('message.received', 'message.queued')"
            ).fetchall()
        )
    finally:
        stored.close()
    assert sizes["message.received"] < 200 and sizes["message.queued"] < 200


async def test_events_older_than_the_retention_are_pruned_when_the_gateway_starts(
    gateway_factory: Any, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["events"] = {"retention": "30d"}
    start = time.time()
    gw, client = await gateway_factory(cfg, clock=lambda: start)
    await client.inbound("old-1", "hello")
    old = await gw.store.last_event_id()
    await gw.stop()
    later = start + 31 * 86400
    gw2, client2 = await gateway_factory(cfg, clock=lambda: later)
    await wait_for(lambda: _pruned(gw2, old), timeout=10)
    await client2.inbound("new-1", "hello again", sender="cust-2")
    kept = await gw2.store.events_since(0, 100)
    assert kept and all(e.id > old for e in kept)
    assert {e.type for e in kept} >= {"message.received", "conversation.created"}


async def _pruned(gw: Any, through: int) -> bool:
    return bool(await gw.store.events_pruned_through() >= through)


WRITER = """
import asyncio, sys
from gateway.store import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.open()
    for i in range(20):
        await store.set_presence("bob", ("away", "online")[i % 2], 0.0)
    await store.close()

asyncio.run(main())
"""


async def test_stream_follows_a_writer_in_another_process(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """Another process writes to the same database; nothing is published on this process's
    bus, and the open stream still shows every event, in order, once."""
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    first = await gw.store.last_event_id()
    sse = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with client.http.get(f"{client.base}/v1/events", headers=sse) as resp:
        await asyncio.sleep(0.2)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(tmp_path / "db.sqlite")
        )
        assert await proc.wait() == 0
        got = await _read_sse(resp, 20)
    assert [e["id"] for e in got] == list(range(first + 1, first + 21))
    assert [e["data"]["status"] for e in got] == ["away", "online"] * 10
