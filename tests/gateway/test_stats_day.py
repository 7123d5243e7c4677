"""A scripted day through the real daemon with a controllable clock (libfaketime), and
every KPI of `/v1/stats` checked against numbers worked out by hand.

The daemon runs under libfaketime with a frozen wall clock read from a file on every call
(FAKETIME_NO_CACHE); the monotonic clock stays real, so asyncio's timers work. Each step
of the day sets the clock, then acts through the public API (or the chat widget's socket).
The day runs once on each store backend: SQLite, and the session's private PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.faketime import faketime_env, write_clock
from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    SECRET,
    Client,
    Receiver,
    agent_token,
    base_config,
    config_text,
    wait_for,
)
from tests.gateway.test_e2e_daemon import Daemon, free_port
from tests.pg import PgServer

SUPERVISOR = "test-supervisor-token"
PARTNER = "test-partner-channel-token"
DAY = "2026-03-02"  # a Monday, UTC+1 in Berlin


class FrozenClock:
    """The daemon's wall clock: a file libfaketime reads on every time() call."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, hhmm: str) -> float:
        write_clock(self.path, f"{DAY} {hhmm}:00")
        return at(hhmm)


def at(hhmm: str) -> float:
    return datetime.fromisoformat(f"{DAY}T{hhmm}:00+00:00").timestamp()


@pytest.fixture
def clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    frozen = FrozenClock(tmp_path / "faketime")
    frozen.set("07:00")
    # Only the daemon (a child process) loads the library; this process keeps real time.
    for name, value in faketime_env(frozen.path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TZ", "UTC")
    yield frozen


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The daemon's `store:` config: an SQLite file, or a schema of its own on the
    session's private PostgreSQL."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "gw.db")}
    request.getfixturevalue("pg_server")  # the session's server, started once
    return {"backend": "postgres", "dsn": PgServer.running().schema_dsn(tmp_path)}


# The survey table's columns the KPIs read (the SQLite store's migration 15). On PostgreSQL,
# made here where the store has no survey table of its own yet.
SURVEY_TABLE = """
CREATE TABLE IF NOT EXISTS survey_responses (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, contact_id TEXT NOT NULL,
    channel TEXT NOT NULL, kind TEXT NOT NULL, score INTEGER, comment TEXT, agent_id TEXT,
    queue TEXT NOT NULL, sent_at DOUBLE PRECISION NOT NULL, answered_at DOUBLE PRECISION,
    language TEXT NOT NULL, message_id TEXT, resolved_at DOUBLE PRECISION NOT NULL
)"""


async def insert_surveys(store: dict[str, Any], rows: list[tuple[Any, ...]]) -> None:
    """Survey responses written straight into the daemon's store (the survey engine's
    table): (id, conversation, contact, channel, kind, score, agent, queue, sent, answered,
    resolved)."""
    sql = (
        "INSERT INTO survey_responses(id, conversation_id, contact_id, channel, kind,"
        " score, agent_id, queue, sent_at, answered_at, language, resolved_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,'en',?)"
    )
    if store.get("backend") != "postgres":
        with sqlite3.connect(store["path"]) as db:
            db.executemany(sql, rows)
        return
    conn = await asyncpg.connect(store["dsn"])  # its search_path: the daemon's schema
    try:
        await conn.execute(SURVEY_TABLE)
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))
        await conn.executemany(numbered, rows)
    finally:
        await conn.close()


def day_config(
    tmp_path: Path, port: int, outbound: str, store: dict[str, Any] | None = None
) -> dict[str, Any]:
    cfg = base_config(tmp_path / "gw.db", outbound)
    if store is not None:
        cfg["store"] = store
    cfg["server"]["port"] = port
    cfg["server"]["shutdown_timeout"] = 3
    # One SLA policy for every conversation; no business hours: always open.
    cfg["routing"]["sla"] = {
        "policies": [
            {
                "name": "day",
                "first_response": "25m",
                "next_response": "20m",
                "resolution": "50m",
            }
        ]
    }
    # Nobody online: the router assigns nothing; the script assigns by hand at set times.
    for agent in cfg["agents"]:
        agent["presence"] = "offline"
    cfg["auth"]["tokens"].append({"name": "lead", "role": "supervisor", "token": SUPERVISOR})
    cfg["channels"] += [
        {
            "name": "partner",
            "type": "api",
            "inbound_token": PARTNER,
            "outbound_url": outbound,
            "allow_private_networks": True,
            "signing_secret": SECRET,
        },
        {
            "name": "web",
            "type": "webchat",
            "secret": "test-webchat-secret-0123456789abcdef",
            "allowed_origins": [f"http://127.0.0.1:{port}"],
            "abandon_after": 0,
        },
    ]
    return cfg


class Day:
    def __init__(self, api: Client, clock: FrozenClock) -> None:
        self.api, self.clock = api, clock

    async def inbound(
        self, hhmm: str, ext: str, sender: str, text: str, token: str = CHANNEL
    ) -> str:
        self.clock.set(hhmm)
        channel = "partner" if token == PARTNER else "api"
        status, body = await self.api.call(
            "POST",
            f"/v1/channels/{channel}/messages",
            token=token,
            json={"external_id": ext, "text": text, "from": {"id": sender}},
        )
        assert status == 202, body
        return str(body["conversation_id"])

    async def act(self, hhmm: str, conv: str, action: str, **body: Any) -> None:
        self.clock.set(hhmm)
        status, answer = await self.api.call(
            "POST", f"/v1/conversations/{conv}/{action}", json=body or None
        )
        assert status in (200, 202), answer

    async def stats(self, token: str = ADMIN, **params: str) -> dict[str, Any]:
        status, body = await self.api.call("GET", "/v1/stats", token=token, params=params)
        assert status == 200, body
        return dict(body)


def group(body: dict[str, Any], key: str | None) -> dict[str, Any]:
    return next(g for g in body["groups"] if g["key"] == key)


def cal(figure: dict[str, Any]) -> dict[str, Any]:
    """A timed figure's calendar part (without its business-hours variant)."""
    return {k: figure[k] for k in ("count", "median", "p90", "mean")}


def t(count: int, median: float | None, p90: float | None, mean: float | None) -> dict[str, Any]:
    return {"count": count, "median": median, "p90": p90, "mean": mean}


async def test_a_scripted_day_gives_the_kpis_worked_out_by_hand(
    tmp_path: Path, clock: FrozenClock, store: dict[str, Any]
) -> None:
    receiver = Receiver()
    outbound_port, port = free_port(), free_port()
    cfg = day_config(tmp_path, port, f"http://127.0.0.1:{outbound_port}/outbound", store)
    (tmp_path / "gateway.yaml").write_text(config_text(cfg))
    await receiver.start(outbound_port)
    daemon = Daemon(tmp_path / "gateway.yaml", port, tmp_path / "daemon.log")
    await daemon.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            day = Day(Client(base, http), clock)
            # C1 (api, general): FRT 08:00→08:10 = 600; next response 08:30→08:40 = 600;
            # resolved 09:00: resolution 3600, handling 09:00-08:05 = 3300,
            # awaiting agent 600 + 600 = 1200; two agent replies: not first-contact.
            c1 = await day.inbound("08:00", "c1-1", "cust-1", "Where is my parcel?")
            await day.act("08:05", c1, "assign", agent="alice")
            await day.act("08:10", c1, "messages", text="Let me check.", agent="alice")
            await day.inbound("08:30", "c1-2", "cust-1", "Any news?")
            await day.act("08:40", c1, "messages", text="It arrives today.", agent="alice")
            await day.act("09:00", c1, "resolve")
            # C2 (api, billing by the refund rule): FRT 09:00→09:20 = 1200; resolved 09:30:
            # resolution 1800, handling 09:30-09:02 = 1680, awaiting 1200. The customer
            # writes again at 11:00 (reopened): next response 11:00→11:15 = 900; resolved
            # 11:45: resolution 11:00→11:45 = 2700, handling 11:45-11:05 = 2400, awaiting
            # 900. One reply before its first resolution, but reopened: not first-contact.
            c2 = await day.inbound("09:00", "c2-1", "cust-2", "I need a refund for invoice 7")
            await day.act("09:02", c2, "assign", agent="bob")
            await day.act("09:20", c2, "messages", text="Refund on its way.", agent="bob")
            await day.act("09:30", c2, "resolve")
            # C3 (partner channel, general): FRT 10:00→10:45 = 2700; resolved 11:00:
            # resolution 3600, handling 11:00-10:30 = 1800, awaiting 2700; first-contact.
            c3 = await day.inbound("10:00", "c3-1", "cust-3", "Hello there", token=PARTNER)
            await day.act("10:30", c3, "assign", agent="alice")
            await day.act("10:45", c3, "messages", text="Hi, how can I help?", agent="alice")
            await day.act("11:00", c3, "resolve")
            assert await day.inbound("11:00", "c2-2", "cust-2", "Still not there") == c2
            await day.act("11:05", c2, "assign", agent="bob")
            await day.act("11:15", c2, "messages", text="Sent again.", agent="bob")
            await day.act("11:45", c2, "resolve")
            # C4 (api, general): FRT 13:00→13:20 = 1200; the customer's 13:30 message is
            # still unanswered at 16:00: waiting 16:00-13:30 = 9000 s (the oldest wait).
            c4 = await day.inbound("13:00", "c4-1", "cust-4", "My login fails")
            await day.act("13:10", c4, "assign", agent="alice")
            await day.act("13:20", c4, "messages", text="Try resetting it.", agent="alice")
            await day.inbound("13:30", "c4-2", "cust-4", "That did not work")
            # C5 (webchat): a visitor writes at 14:00 and leaves at 14:03 unanswered.
            clock.set("14:00")
            ws = await http.ws_connect(f"{base}/webchat/web/ws", origin=base)
            await ws.send_json({"type": "hello", "token": None})
            await ws.send_json({"type": "message", "client_id": "m1", "text": "Anyone there?"})

            async def c5_created() -> str | None:
                _, page = await day.api.call("GET", "/v1/conversations", params={"channel": "web"})
                return page["conversations"][0]["id"] if page["conversations"] else None

            await wait_for(c5_created, timeout=10)
            clock.set("14:03")
            await ws.close()
            # C6 (api, general): never assigned, waiting since 15:00.
            await day.inbound("15:00", "c6-1", "cust-6", "Do you ship to Austria?")
            clock.set("16:00")

            async def abandoned() -> dict[str, Any] | None:
                body = await day.stats(**{"from": DAY, "to": DAY})
                return body if body["totals"]["abandoned"]["count"] else None

            await wait_for(abandoned, timeout=10)
            # Surveys (the survey engine's table, filled directly): CSAT C1 5, C2 3, C3 4;
            # NPS C1 10, C3 9, C2 6; CES C1 2, C3 5; sent and not answered: CSAT C4, CES C2.
            contact = {}
            for cid in (c1, c2, c3, c4):
                _, conv = await day.api.call("GET", f"/v1/conversations/{cid}")
                contact[cid] = conv["contact_id"]

            def answered(row: tuple[Any, ...]) -> float | None:
                return at(row[8]) if row[8] else None

            rows = [
                ("s1", c1, "api", "csat", 5, "alice", "general", "09:05", "09:10"),
                ("s2", c2, "api", "csat", 3, "bob", "billing", "09:35", "09:40"),
                ("s3", c3, "partner", "csat", 4, "alice", "general", "11:05", "11:10"),
                ("s4", c1, "api", "nps", 10, "alice", "general", "09:05", "09:12"),
                ("s5", c3, "partner", "nps", 9, "alice", "general", "11:05", "11:12"),
                ("s6", c2, "api", "nps", 6, "bob", "billing", "09:35", "09:42"),
                ("s7", c1, "api", "ces", 2, "alice", "general", "09:05", "09:14"),
                ("s8", c3, "partner", "ces", 5, "alice", "general", "11:05", "11:14"),
                ("s9", c4, "api", "csat", None, "alice", "general", "13:40", None),
                ("s10", c2, "api", "ces", None, "bob", "billing", "11:50", None),
            ]
            await insert_surveys(
                store,
                # (resolved when the survey was sent)
                [(*r[:2], contact[r[1]], *r[2:7], at(r[7]), answered(r), at(r[7])) for r in rows],
            )

            body = await day.stats(**{"from": DAY, "to": DAY})
            assert body["from"] == f"{DAY}T00:00:00Z" and body["to"] == "2026-03-03T00:00:00Z"
            tot = body["totals"]
            assert tot["conversations"] == 6
            # in: C1 2, C2 2, C3 1, C4 2, C5 1, C6 1 = 9; out: C1 2, C2 2, C3 1, C4 1 = 6.
            assert (tot["volume_in"], tot["volume_out"]) == (9, 6)
            # FRT [600, 1200, 1200, 2700]: median (1200+1200)/2, p90 = 4th of 4, mean 5700/4.
            assert cal(tot["first_response"]) == t(4, 1200.0, 2700.0, 1425.0)
            # Next response [600, 900].
            assert cal(tot["next_response"]) == t(2, 750.0, 900.0, 750.0)
            # Resolution [1800, 2700, 3600, 3600]: median (2700+3600)/2, mean 11700/4.
            assert cal(tot["resolution"]) == t(4, 3150.0, 3600.0, 2925.0)
            # Handling [1680, 1800, 2400, 3300]: median (1800+2400)/2, mean 9180/4.
            assert tot["handling"] == t(4, 2100.0, 3300.0, 2295.0)
            # Awaiting agent [900, 1200, 1200, 2700]: mean 6000/4.
            assert tot["awaiting_agent"] == t(4, 1200.0, 2700.0, 1500.0)
            # First resolutions C1, C2, C3; only C3 first-contact: 1/3.
            assert tot["first_contact_resolution"] == {
                "resolved": 3,
                "first_contact": 1,
                "rate": 0.3333,
            }
            assert tot["reopened"] == 1
            # Not resolved at 16:00: C4, C5, C6, all waiting; oldest C4's 13:30 message.
            assert tot["backlog"] == {"open": 3, "waiting": 3, "oldest_waiting": 9000.0}
            # One abandonment of six conversations: 1/6.
            assert tot["abandoned"] == {"count": 1, "rate": 0.1667}
            # CSAT 4-5 among [5, 3, 4]: 2/3; NPS promoters [10, 9] detractors [6]:
            # (2 - 1)/3; CES mean (2 + 5)/2; surveys: 10 sent, 8 answered.
            assert tot["csat"] == {"responses": 3, "percent": 66.67}
            assert tot["nps"] == {"responses": 3, "promoters": 2, "detractors": 1, "score": 33.33}
            assert tot["ces"] == {"responses": 2, "mean": 3.5}
            assert tot["survey_response_rate"] == {"sent": 10, "answered": 8, "rate": 0.8}
            # SLA (first response 25m, next response 20m, resolution 50m; the resolution
            # clock pauses while the customer is the one to write):
            # first response: met C1 (600), C2 (1200), C4 (1200); breached C3 (2700: due
            # 10:25), C5 (due 14:25), C6 (due 15:25).
            # next response: met C1 (08:30->08:40), C2 (11:00->11:15); breached C4
            # (13:30, due 13:50).
            # resolution (decided at the first resolution): met C1 (1200 s used),
            # C2 (1200), C3 (2700); breached C4 (1200 used by 13:20, 1800 left from
            # 13:30: due 14:00), C5 (due 14:50), C6 (due 15:50).
            # In all: 8 met, 7 breached: 8/15.
            assert tot["sla"] == {
                "met": 8,
                "breached": 7,
                "attainment": 0.5333,
                "breaches": 7,
                "first_response": {"met": 3, "breached": 3, "attainment": 0.5},
                "next_response": {"met": 2, "breached": 1, "attainment": 0.6667},
                "resolution": {"met": 3, "breached": 3, "attainment": 0.5},
            }
            # No business hours configured: business time is calendar time.
            assert tot["first_response"]["business"] == t(4, 1200.0, 2700.0, 1425.0)
            assert tot["resolution"]["business"] == t(4, 3150.0, 3600.0, 2925.0)

            by_channel = await day.stats(**{"from": DAY, "to": DAY, "group_by": "channel"})
            assert [g["key"] for g in by_channel["groups"]] == ["api", "partner", "web"]
            api, partner, web = (group(by_channel, k) for k in ("api", "partner", "web"))
            assert (api["conversations"], partner["conversations"], web["conversations"]) == (
                4,
                1,
                1,
            )
            # api: FRT C1 600, C2 1200, C4 1200; partner: C3 2700.
            assert cal(api["first_response"]) == t(3, 1200.0, 1200.0, 1000.0)
            assert cal(partner["first_response"]) == t(1, 2700.0, 2700.0, 2700.0)
            assert web["abandoned"] == {"count": 1, "rate": 1.0}
            # SLA on the web channel: C5's first response and resolution, both breached.
            assert (web["sla"]["met"], web["sla"]["breached"]) == (0, 2)
            assert web["sla"]["attainment"] == 0.0
            # Backlog now: api C4 and C6 (oldest 13:30), web C5 (since 14:00 = 7200 s).
            assert api["backlog"] == {"open": 2, "waiting": 2, "oldest_waiting": 9000.0}
            assert web["backlog"] == {"open": 1, "waiting": 1, "oldest_waiting": 7200.0}
            # Surveys on api: CSAT [5, 3] = 50 %; partner: [4] = 100 %.
            assert api["csat"]["percent"] == 50.0 and partner["csat"]["percent"] == 100.0

            by_agent = await day.stats(**{"from": DAY, "to": DAY, "group_by": "agent"})
            alice, bob, nobody = (group(by_agent, k) for k in ("alice", "bob", None))
            # alice replied C1 twice, C3, C4; bob C2 twice. FRT alice [600, 1200, 2700].
            assert (alice["volume_out"], bob["volume_out"]) == (4, 2)
            assert cal(alice["first_response"]) == t(3, 1200.0, 2700.0, 1500.0)
            assert cal(bob["first_response"]) == t(1, 1200.0, 1200.0, 1200.0)
            assert cal(bob["next_response"]) == t(1, 900.0, 900.0, 900.0)
            # Resolutions by the assignee: alice C1 3600, C3 3600; bob C2 1800, 2700.
            assert cal(alice["resolution"]) == t(2, 3600.0, 3600.0, 3600.0)
            assert cal(bob["resolution"]) == t(2, 2250.0, 2700.0, 2250.0)
            assert alice["first_contact_resolution"] == {
                "resolved": 2,
                "first_contact": 1,
                "rate": 0.5,
            }
            # Backlog: C4 is alice's; C5 and C6 have no assignee.
            assert alice["backlog"]["open"] == 1 and nobody["backlog"]["open"] == 2
            # In without an assignee: C1 08:00, C2 09:00 and 11:00 (reopened), C3, C4 13:00,
            # C5, C6 = 7; alice: C1 08:30, C4 13:30 = 2.
            assert (nobody["volume_in"], alice["volume_in"]) == (7, 2)
            assert alice["csat"]["percent"] == 100.0 and bob["csat"]["percent"] == 0.0

            by_queue = await day.stats(**{"from": DAY, "to": DAY, "group_by": "queue"})
            billing = group(by_queue, "billing")
            assert billing["conversations"] == 1 and billing["reopened"] == 1
            # SLA: billing (C2) met all three; general the other 5 met, 7 breached.
            assert (billing["sla"]["met"], billing["sla"]["attainment"]) == (3, 1.0)
            general = group(by_queue, "general")
            assert (general["sla"]["met"], general["sla"]["breached"]) == (5, 7)
            assert general["sla"]["attainment"] == 0.4167
            assert cal(billing["resolution"]) == t(2, 2250.0, 2700.0, 2250.0)

            # By hour in Berlin (UTC+1): every hour of the local day, C1's first response
            # (08:10 UTC) in the 09:00 local hour.
            by_hour = await day.stats(
                **{"from": DAY, "to": DAY, "group_by": "hour", "tz": "Europe/Berlin"}
            )
            assert len(by_hour["groups"]) == 24
            assert by_hour["groups"][0]["key"] == f"{DAY}T00:00+01:00"
            h9 = group(by_hour, f"{DAY}T09:00+01:00")
            assert cal(h9["first_response"]) == t(1, 600.0, 600.0, 600.0)
            assert h9["volume_in"] == 2 and h9["backlog"] is None
            by_day = await day.stats(**{"from": "2026-03-01", "to": DAY, "group_by": "day"})
            assert [g["key"] for g in by_day["groups"]] == ["2026-03-01", DAY]
            assert by_day["groups"][0]["volume_in"] == 0 and by_day["groups"][1]["volume_in"] == 9

            # One channel's days (the reports page's volume per channel per day): partner
            # had C3 only; api by hour in UTC: C1's two messages at 08:00 and 08:30.
            partner_days = await day.stats(
                **{"from": DAY, "to": DAY, "group_by": "day", "channel": "partner"}
            )
            assert partner_days["totals"]["conversations"] == 1
            assert cal(partner_days["totals"]["first_response"]) == t(1, 2700.0, 2700.0, 2700.0)
            assert partner_days["totals"]["csat"]["percent"] == 100.0
            assert group(partner_days, DAY)["volume_in"] == 1
            api_hours = await day.stats(
                **{"from": DAY, "to": DAY, "group_by": "hour", "channel": "api"}
            )
            assert group(api_hours, f"{DAY}T08:00+00:00")["volume_in"] == 2
            assert api_hours["totals"]["backlog"]["open"] == 2  # C4, C6

            # CSV: the same figures, one row per group and the total.
            status, text = await day.api.call(
                "GET",
                "/v1/stats",
                params={"from": DAY, "to": DAY, "group_by": "channel"},
                headers={"Accept": "text/csv"},
            )
            assert status == 200
            table = list(csv.DictReader(io.StringIO(text)))
            assert [r["channel"] for r in table] == ["api", "partner", "web", "total"]
            assert table[-1]["first_response_median"] == "1200.0"
            assert table[-1]["nps"] == "33.33" and table[0]["conversations"] == "4"
            assert table[-1]["sla_attainment"] == "0.5333" and table[-1]["sla_breaches"] == "7"
            assert table[-1]["first_response_business_median"] == "1200.0"
            status, text = await day.api.call(
                "GET",
                "/v1/stats/survey-responses",
                params={"from": DAY, "to": DAY, "format": "csv"},
            )
            assert status == 200
            responses = list(csv.DictReader(io.StringIO(text)))
            assert len(responses) == 10 and responses[0]["sent_at"] == f"{DAY}T09:05:00Z"

            # Who may read: a supervisor reads the stats (and works with conversations,
            # issue 14), not the administration; an agent gets 403.
            assert (await day.stats(token=SUPERVISOR, **{"from": DAY, "to": DAY}))["totals"] == tot
            status, _ = await day.api.call("GET", "/v1/quarantine", token=SUPERVISOR)
            assert status == 403
            status, _ = await day.api.call("GET", "/v1/stats", token=agent_token("alice"))
            assert status == 403

            # Prometheus: the histograms saw the four first responses and the four
            # resolutions; the gauges show the backlog by queue and the survey scores.
            async with http.get(f"{base}/metrics") as r:
                metrics = await r.text()
            assert (
                'switchboard_first_response_seconds_count{channel="api",queue="general"} 2.0'
                in metrics
            )
            assert (
                'switchboard_first_response_seconds_count{channel="api",queue="billing"} 1.0'
                in metrics
            )
            assert (
                'switchboard_resolution_seconds_sum{channel="api",queue="billing"} 4500.0'
                in metrics
            )
            assert 'switchboard_backlog{queue="general"} 3.0' in metrics
            assert 'switchboard_queue_waiting{queue="general"} 3.0' in metrics
            assert "switchboard_agents_online 0.0" in metrics
            assert 'switchboard_survey_score{kind="ces"} 3.5' in metrics
    finally:
        assert daemon.terminate() == 0
        await receiver.stop()
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log, log
