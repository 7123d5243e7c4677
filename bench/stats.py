"""KPI benchmark: `GET /v1/stats` over a month of `--conversations` conversations.

A SQLite store (in a temp dir, migrated by the store itself) is filled with a month of
conversations, their messages and the events the store writes for them (created, received,
assigned, queued, resolved, reopened; the same event shapes `SqliteStore` writes), in bulk
SQL (going through the store's ingest would take an hour here). Then:
1. the KPI fold reads the whole event log into the rollups (timed: the one-off cost of
   migration 14 on an existing log, and the fold's rate);
2. a real gateway (in process, aiohttp) answers `GET /v1/stats` for the month with no
   grouping and with each `group_by`, `--repeat` times each; the best and median times,
   and the longest the event loop was held meanwhile (tests/looplag.py: the process's
   loop, which also runs the bench's client and the answer's JSON).
Baseline, in the same run: one bare scan that counts the month's messages per channel
from the base tables (what any report reading the raw data costs at least).

    python -m bench.stats --conversations 100000

`--keep PATH` keeps the generated and folded database at PATH (a later run passes
`--reuse PATH` to time the answers again without generating and folding anew; the store
still migrates it and folds what is left, e.g. a new rollup's backfill).

`--postgres`: the same month on PostgreSQL. A private server (tests/pg.py: `fsync=off`) is
started, the folded SQLite database is copied into it by `switchboard migrate` (timed), and
the gateway answers from PostgreSQL; the baseline is the same scan there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from gateway.app import Gateway
from gateway.config import load_config_text
from gateway.store.sqlite import SqliteStore
from tests.looplag import LoopLag

MONTH_START = 1772323200.0  # 2026-03-01T00:00:00Z
MONTH = 31 * 86400.0
CHANNELS = [("web", "webchat"), ("mail", "email"), ("sms", "twilio_sms"), ("api", "api")]
QUEUES = ["general", "billing", "technical"]
TOKEN = "bench-stats-admin-token"


def config(db: Path, agents: int, dsn: str | None = None) -> str:
    store = (
        "{path: '" + str(db) + "'}" if dsn is None else "{backend: postgres, dsn: '" + dsn + "'}"
    )
    lines = [
        "server: {host: 127.0.0.1, port: 0}",
        "store: " + store,
        "auth: {tokens: [{name: admin, role: admin, token: " + TOKEN + "}]}",
        "channels: [{name: api, type: api, inbound_token: bench-stats-channel}]",
        "events: {retention: 3650d}",
        "routing:",
        "  queues: [{name: general}, {name: billing}, {name: technical}]",
        "  default: {queue: general}",
        "agents:",
    ]
    for i in range(agents):
        lines.append(f"  - {{id: a{i:03d}, name: A{i}, queues: [general], presence: offline}}")
    return "\n".join(lines) + "\n"


class Writer:
    """Rows as the store writes them, gathered for executemany."""

    def __init__(self) -> None:
        self.conversations: list[tuple[object, ...]] = []
        self.messages: list[tuple[object, ...]] = []
        self.events: list[tuple[str, float, bytes]] = []
        self.n = 0

    def event(self, kind: str, at: float, data: dict[str, object]) -> None:
        self.events.append((kind, at, orjson.dumps(data).decode()))

    def message(
        self, conv: str, at: float, direction: str, channel: str, agent: str | None
    ) -> None:
        self.n += 1
        mid = f"msg_{self.n:09d}"
        sender_type = "contact" if direction == "in" else "agent"
        self.messages.append(
            (
                mid,
                conv,
                direction,
                channel,
                sender_type,
                agent,
                "text",
                at,
                at,
                None if direction == "in" else "sent",
            )
        )
        if direction == "in":
            self.event("message.received", at, {"conversation_id": conv, "message_id": mid})
        else:
            self.event("message.queued", at, {"conversation_id": conv, "message_id": mid})


def generate(conversations: int, agents: int, seed: int = 13) -> Writer:
    rnd = random.Random(seed)
    w = Writer()
    starts = sorted(MONTH_START + rnd.random() * (MONTH - 3 * 86400) for _ in range(conversations))
    for i, t0 in enumerate(starts):
        cid = f"cv_{i:08d}"
        channel, kind = rnd.choice(CHANNELS)
        queue = rnd.choice(QUEUES)
        agent = f"a{rnd.randrange(agents):03d}"
        t = t0
        conv = {"id": cid, "channel": channel, "queue": queue, "assignee": None}
        w.event("conversation.created", t, {"conversation": conv})
        w.message(cid, t, "in", channel, None)
        t += rnd.expovariate(1 / 120)
        w.event(
            "conversation.assigned", t, {"conversation_id": cid, "agent": agent, "queue": queue}
        )
        assigned = t
        t += rnd.expovariate(1 / 600)
        w.message(cid, t, "out", channel, agent)
        first = t
        for _ in range(rnd.choice((0, 0, 1, 1, 2))):
            t += rnd.expovariate(1 / 900)
            w.message(cid, t, "in", channel, None)
            t += rnd.expovariate(1 / 400)
            w.message(cid, t, "out", channel, agent)
        status, resolved = "assigned", None
        if rnd.random() < 0.9:
            t += rnd.expovariate(1 / 1800)
            w.event("conversation.resolved", t, {"conversation_id": cid, "by": "admin"})
            status, resolved = "resolved", t
            if rnd.random() < 0.05:
                t += rnd.expovariate(1 / 3600)
                w.event("conversation.reopened", t, {"conversation_id": cid, "by": "customer"})
                w.message(cid, t, "in", channel, None)
                t += 60
                w.event(
                    "conversation.assigned",
                    t,
                    {"conversation_id": cid, "agent": agent, "queue": queue},
                )
                t += rnd.expovariate(1 / 600)
                w.message(cid, t, "out", channel, agent)
                t += rnd.expovariate(1 / 1800)
                w.event("conversation.resolved", t, {"conversation_id": cid, "by": "admin"})
                resolved = t
        w.conversations.append(
            (
                cid,
                f"ct_{i:08d}",
                channel,
                kind,
                channel,
                status,
                queue,
                0,
                t0,
                t,
                agent,
                assigned,
                first,
                resolved,
                t0,
            )
        )
    w.events.sort(key=lambda e: e[1])  # the log is in commit order
    return w


def fill(db: Path, w: Writer) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        conn.executemany(
            "INSERT INTO conversations(id, contact_id, channel, channel_kind, last_channel, status,"
            " queue, priority, created_at, updated_at, assignee, assigned_at, first_response_at,"
            " resolved_at, last_inbound_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            w.conversations,
        )
        conn.executemany(
            "INSERT INTO messages(id, conversation_id, direction, channel, sender_type, sender_id,"
            " text, created_at, updated_at, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
            w.messages,
        )
        conn.executemany("INSERT INTO events(type, at, data) VALUES (?,?,?)", w.events)
    conn.close()
    as_the_store_writes(db)


def as_the_store_writes(db: Path) -> None:
    """The conversations' contacts (nothing here reads them; PostgreSQL's foreign keys do),
    and the events' data as text (a month an earlier version of this bench made had
    neither)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT OR IGNORE INTO contacts(id, created_at, updated_at)"
            " SELECT contact_id, MIN(created_at), MIN(created_at) FROM conversations"
            " GROUP BY contact_id"
        )
        conn.execute("UPDATE events SET data = CAST(data AS TEXT) WHERE typeof(data) = 'blob'")
    conn.close()


BASELINE = (
    "SELECT c.channel, COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE m.created_at >= ? AND m.created_at < ? GROUP BY c.channel"
)


async def pg_baseline(dsn: str) -> float:
    """`baseline` on PostgreSQL."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.fetch(
            BASELINE.replace("?", "$1", 1).replace("?", "$2", 1),
            MONTH_START,
            MONTH_START + MONTH,
        )
        return time.perf_counter() - t0
    finally:
        await conn.close()


def baseline(db: Path) -> float:
    conn = sqlite3.connect(db)
    t0 = time.perf_counter()
    conn.execute(BASELINE, (MONTH_START, MONTH_START + MONTH)).fetchall()
    took = time.perf_counter() - t0
    conn.close()
    return took


async def prepare(db: Path, conversations: int, agents: int) -> None:
    """Generate the month into a new store at `db` and fold it (timed)."""
    store = SqliteStore(db)
    await store.open()
    await store.close()
    t0 = time.perf_counter()
    w = generate(conversations, agents)
    fill(db, w)
    print(
        f"generated {conversations:,} conversations, {len(w.messages):,} messages,"
        f" {len(w.events):,} events in {time.perf_counter() - t0:.1f} s"
    )
    # Millions of generated rows kept alive would be walked by every full garbage
    # collection during the timed answers (a gateway holds nothing like them).
    del w
    gc.collect()
    await fold(db, "fold")


async def fold(db: Path, label: str) -> None:
    """Fold what the event log holds after the stats cursor (timed)."""
    store = SqliteStore(db)
    await store.open()
    t0, c0, folded = time.perf_counter(), time.process_time(), 0
    # Business seconds as a gateway without `routing.hours` computes them (always open).
    while (n := (await store.stats_fold(5000, lambda queue, a, b: b - a))[0]) > 0:
        folded += n
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    await store.close()
    print(
        f"{label}: {folded:,} events in {took:.1f} s wall, {cpu:.1f} s CPU"
        f" ({folded / max(took, 1e-9):,.0f} events/s)"
    )


async def on_postgres(db: Path, conversations: int, agents: int, repeat: int) -> None:
    """Copy the folded month into a private PostgreSQL and time the answers there."""
    from tests.pg import PgServer  # the tests' private server: only this mode needs it

    pg = PgServer()
    pg.start()
    try:
        dsn = await pg.new_database()
        as_the_store_writes(db)
        t0 = time.perf_counter()
        copy = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "migrate", "--from", f"sqlite:{db}", "--to", dsn],
            capture_output=True,
            text=True,
        )
        if copy.returncode != 0:
            raise SystemExit(copy.stderr[-2000:])
        print(f"copied to PostgreSQL (switchboard migrate) in {time.perf_counter() - t0:.1f} s")
        await pg_vacuum(dsn)
        await answer(db, conversations, agents, repeat, dsn)
    finally:
        pg.stop()


async def pg_vacuum(dsn: str) -> None:
    """Statistics and visibility map after the bulk copy, as autovacuum would make them."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        print(f"VACUUM ANALYZE in {time.perf_counter() - t0:.1f} s")
    finally:
        await conn.close()


async def run(
    conversations: int,
    agents: int,
    repeat: int,
    keep: Path | None,
    reuse: Path | None,
    postgres: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if reuse is not None:
            db = reuse
            await fold(db, f"reusing {db}; fold (migrations, backfills)")
        else:
            db = keep if keep is not None else Path(tmp) / "bench.db"
            if db.exists():
                raise SystemExit(f"{db} exists: pass --reuse {db} to time it again")
            await prepare(db, conversations, agents)
        if postgres:
            await on_postgres(db, conversations, agents, repeat)
        else:
            await answer(db, conversations, agents, repeat)


async def answer(
    db: Path, conversations: int, agents: int, repeat: int, dsn: str | None = None
) -> None:
    """Time `GET /v1/stats` for the month, with no grouping and with each `group_by` (on
    PostgreSQL at `dsn` if given)."""
    if dsn is None:
        base = min(baseline(db) for _ in range(repeat))
    else:
        base = min([await pg_baseline(dsn) for _ in range(repeat)])
    print(f"baseline (one scan of the month's messages per channel): {base * 1000:.0f} ms")
    gw = Gateway(load_config_text(config(db, agents, dsn)))
    await gw.start()
    try:
        url = f"http://127.0.0.1:{gw.port}/v1/stats"
        params = {
            "from": "2026-03-01T00:00:00Z",
            "to": "2026-04-01T00:00:00Z",
            "tz": "Europe/Berlin",
        }
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            print(
                "| group_by | best wall | median wall | median CPU | wall / baseline | groups"
                " | max loop stall |"
            )
            print("|---|---|---|---|---|---|---|")
            for group_by in (None, "channel", "queue", "agent", "day", "hour"):
                query = dict(params, **({"group_by": group_by} if group_by else {}))
                times, cpus = [], []
                async with LoopLag() as lag:
                    for _ in range(repeat):
                        t0, c0 = time.perf_counter(), time.process_time()
                        async with http.get(url, params=query) as r:
                            body = await r.json()
                            assert r.status == 200, body
                        times.append(time.perf_counter() - t0)
                        cpus.append(time.process_time() - c0)
                groups = len(body["groups"] or [])
                assert body["totals"]["conversations"] == conversations, body["totals"]
                best, median = min(times), statistics.median(times)
                print(
                    f"| {group_by or '(none)'} | {best * 1000:.0f} ms | {median * 1000:.0f} ms"
                    f" | {statistics.median(cpus) * 1000:.0f} ms | {median / base:.1f}"
                    f" | {groups} | {lag.max * 1000:.0f} ms |"
                )
    finally:
        await gw.stop()
    print("load average at the end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="generate into this SQLite file and keep it (must not exist)"
    )
    parser.add_argument(
        "--reuse", type=Path, help="time the answers on a database an earlier --keep left"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="answer from a private PostgreSQL (a copy)"
    )
    args = parser.parse_args()
    if args.keep is not None and args.reuse is not None:
        parser.error("--keep and --reuse exclude each other")
    if args.reuse is not None and not args.reuse.exists():
        parser.error(f"--reuse {args.reuse}: no such file")
    asyncio.run(
        run(args.conversations, args.agents, args.repeat, args.keep, args.reuse, args.postgres)
    )


if __name__ == "__main__":
    main()
