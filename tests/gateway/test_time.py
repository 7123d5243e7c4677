"""Business hours, SLAs and the wait queue through a running gateway, on an injected clock:
out of hours a conversation is answered and parked (or overflows) and is routed at the
opening; SLA clocks pause while pending, warn, breach once and act; a restart fires what
fell due; two stores firing at once fire once; the long-wait message goes out once."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import standardwebhooks

from gateway.store.sqlite import SqliteStore
from gateway.time.sla import sla_planner
from tests.gateway.conftest import SECRET, Receiver, agent_token, base_config, wait_for

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(tmp_path: Path, **routing: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["agents"][1]["queues"] = ["general", "night"]  # bob also serves the night queue
    cfg["routing"]["hours"] = {
        "office": {"timezone": "Europe/Berlin", "weekly": {d: ["08:00-18:00"] for d in WEEKDAYS}}
    }
    cfg["routing"]["queues"] = [
        {"name": "general", "hours": "office"},
        {"name": "billing", "strategy": "skills", "hours": "office"},
        {"name": "night"},  # no calendar: always open
    ]
    cfg["routing"].update(routing)
    cfg["timers"] = {"max_sleep": 0.05}
    return cfg


async def events(gw: Any, kind: str | None = None) -> list[Any]:
    out = await gw.store.events_since(0, 10_000)
    return [e for e in out if kind is None or e.type == kind]


async def bot_texts(client: Any, conv_id: str) -> list[str]:
    conv = await client.conversation(conv_id)
    return [m["text"] for m in conv["messages"] if m["sender"]["type"] == "bot"]


# --- out of hours ----------------------------------------------------------------------------
async def test_closed_queue_answers_parks_and_routes_at_the_opening(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-23 07:00"))  # Monday, an hour before opening
    gw, client = await gateway_factory(config(tmp_path), clock=clock)
    status, body = await client.inbound("m1", "hello, anyone?")
    assert status == 202, body
    conv_id = body["conversation_id"]
    replies = await wait_for(lambda: bot_texts(client, conv_id))
    assert replies == [
        "Thank you for your message. We are closed right now and back at 08:00; we will "
        "answer you then."
    ]
    conv = await client.conversation(conv_id)
    assert conv["queue"] == "general"
    assert any("closed" in r for r in conv["routing"]["reasons"])
    await gw.dispatcher.run_pass()
    await asyncio.sleep(0.3)  # the safety pass and the opening source run meanwhile
    assert (await client.conversation(conv_id))["assignee"] is None  # agents online, but closed

    clock.t = at("2026-03-23 08:00")  # the opening: routed without any new event
    conv = await wait_for(lambda: client.assigned(conv_id), timeout=3)
    assert conv["assignee"] in ("alice", "bob")


async def test_the_closed_reply_speaks_the_contacts_language_and_is_capped(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-27 19:00"))  # Friday evening: back on Monday
    cfg = config(tmp_path)
    cfg["notices"] = {"max_per_contact": 1}
    cfg["conversations"] = {"reopen_window": 1}
    _, client = await gateway_factory(cfg, clock=clock)
    german = {"from_": {"attributes": {"language": "de-AT"}}}
    _, body = await client.inbound("m1", "Hallo?", sender="de-1", **german)
    texts = await wait_for(lambda: bot_texts(client, body["conversation_id"]))
    assert texts == [
        "Danke für Ihre Nachricht. Wir sind gerade nicht erreichbar und am Montag ab 08:00 "
        "Uhr wieder für Sie da; dann antworten wir Ihnen."
    ]
    # The same customer again in a new conversation the same night: the cap holds.
    await client.call("POST", f"/v1/conversations/{body['conversation_id']}/resolve")
    clock.t += 10  # beyond the reopen window: a new conversation, still closed
    _, again = await client.inbound("m2", "Hallo nochmal", sender="de-1", **german)
    assert again["conversation_id"] != body["conversation_id"]
    await asyncio.sleep(0.2)
    assert await bot_texts(client, again["conversation_id"]) == []  # one a day at most


async def test_a_closed_queue_overflows_to_an_open_one(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-23 22:00"))
    cfg = config(tmp_path)
    cfg["routing"]["queues"][0]["out_of_hours"] = {"action": "overflow", "overflow": "night"}
    _, client = await gateway_factory(cfg, clock=clock)
    _, body = await client.inbound("m1", "my server is down")
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    assert conv["queue"] == "night" and conv["assignee"] == "bob"
    assert any("overflow to 'night'" in r for r in conv["routing"]["reasons"])
    assert await bot_texts(client, body["conversation_id"]) == []


# --- SLA -------------------------------------------------------------------------------------
SLA = {
    "warning": "10m",
    "policies": [
        {
            "name": "vip",
            "when": {"segment": ["gold"]},
            "first_response": "30m",
            "resolution": "2h",
            "on_breach": {"bump_priority": True, "move_to": "night"},
        },
        {"name": "standard", "first_response": "1h", "next_response": "1h", "resolution": "4h"},
    ],
}


async def test_sla_due_times_pause_warn_and_breach_once(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-23 09:00"))  # Monday, open
    cfg = config(tmp_path, sla=SLA)
    cfg["agents"][0]["presence"] = cfg["agents"][1]["presence"] = "offline"  # nobody takes it
    gw, client = await gateway_factory(cfg, clock=clock)
    _, body = await client.inbound("m1", "help")
    conv_id = body["conversation_id"]
    await gw.deadlines.run_once()
    sla = (await client.conversation(conv_id))["sla"]
    assert sla["policy"] == "standard"
    assert sla["first_response"]["due_at"] == "2026-03-23T09:00:00Z"  # 10:00 Berlin
    assert sla["resolution"]["due_at"] == "2026-03-23T12:00:00Z"

    clock.t = at("2026-03-23 09:51")
    await gw.deadlines.run_once()
    assert [e.data["target"] for e in await events(gw, "sla.warning")] == ["first_response"]
    clock.t = at("2026-03-23 10:01")
    await gw.deadlines.run_once()
    await gw.deadlines.run_once()
    breached = await events(gw, "sla.breached")
    assert [e.data["target"] for e in breached] == ["first_response"]
    conv = await client.conversation(conv_id)
    assert conv["sla"]["first_response"]["breached_at"] is not None

    # An agent answers: resolution pauses while the customer is the one to write.
    await client.call(
        "POST", f"/v1/conversations/{conv_id}/assign", json={"agent": "alice", "force": True}
    )
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token("alice"),
        json={"text": "On it"},
    )
    assert status == 202
    await gw.deadlines.run_once()
    conv = await client.conversation(conv_id)
    assert conv["status"] == "pending"
    assert conv["sla"]["resolution"] == {
        "due_at": None,
        "met_at": None,
        "paused": True,
        "remaining_seconds": 3 * H - 60,  # 09:00-10:01 used
        "warned_at": None,
        "breached_at": None,
    }
    clock.t = at("2026-03-24 12:00")  # a day later: paused, nothing breaches
    await gw.deadlines.run_once()
    assert [e.data["target"] for e in await events(gw, "sla.breached")] == ["first_response"]

    # The customer writes back: resolution runs again with what was left; next response too.
    await client.inbound("m2", "still broken")
    await gw.deadlines.run_once()
    sla = (await client.conversation(conv_id))["sla"]
    assert sla["resolution"]["due_at"] == "2026-03-24T13:59:00Z"  # 12:00 + 2h59m, Berlin
    assert sla["next_response"]["due_at"] == "2026-03-24T12:00:00Z"


async def test_a_breach_acts_and_reaches_webhooks(
    tmp_path: Path, gateway_factory: Any, receiver: Receiver
) -> None:
    clock = Clock(at("2026-03-23 09:00"))
    cfg = config(tmp_path, sla=SLA)
    cfg["webhooks"] = [
        {
            "url": receiver.url,
            "secret": SECRET,
            "allow_private_networks": True,  # the receiver listens on loopback
            "events": ["sla.*"],
        }
    ]
    cfg["agents"][1]["presence"] = "offline"  # bob (night) away until the breach moves it
    cfg["agents"][0]["presence"] = "offline"
    gw, client = await gateway_factory(cfg, clock=clock)
    vip = {"from_": {"attributes": {"segment": "gold"}}}
    _, body = await client.inbound("m1", "help", sender="vip-1", **vip)
    conv_id = body["conversation_id"]
    await gw.deadlines.run_once()
    clock.t = at("2026-03-23 09:31")
    await gw.deadlines.run_once()
    [breach] = await events(gw, "sla.breached")
    assert breach.data["policy"] == "vip" and breach.data["target"] == "first_response"
    assert breach.data["actions"] == [
        "priority raised to high",
        "moved from queue general to night",
    ]
    conv = await client.conversation(conv_id)
    assert (conv["priority"], conv["queue"]) == ("high", "night")
    transferred = await events(gw, "conversation.transferred")
    assert transferred[0].data["by"] == "sla"
    # "notify": the helpdesk's webhook gets the warning and the breach (both fell due), signed.
    await wait_for(lambda: len(receiver.requests) >= 2, timeout=10)
    hooks = [standardwebhooks.Webhook(SECRET).verify(raw, h) for h, raw in receiver.requests]
    assert [(h["type"], h["data"]["target"]) for h in hooks] == [
        ("sla.warning", "first_response"),
        ("sla.breached", "first_response"),
    ]
    assert hooks[1]["data"]["conversation_id"] == conv_id


async def test_a_restart_fires_what_fell_due_while_down(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-23 09:00"))
    cfg = config(tmp_path, sla=SLA)
    cfg["agents"][0]["presence"] = cfg["agents"][1]["presence"] = "offline"
    gw, client = await gateway_factory(cfg, clock=clock)
    _, body = await client.inbound("m1", "help")
    await gw.deadlines.run_once()
    await gw.stop()  # the timers are rows in the store, not tasks in this process

    clock.t = at("2026-03-23 11:00")  # first response (10:00) fell due while down
    gw2, client2 = await gateway_factory(cfg, clock=clock)
    await wait_for(lambda: events(gw2, "sla.breached"), timeout=3)
    await gw2.deadlines.run_once()
    kinds = [(e.type, e.data["target"]) for e in await events(gw2) if e.type.startswith("sla.")]
    assert kinds == [("sla.warning", "first_response"), ("sla.breached", "first_response")]
    conv = await client2.conversation(body["conversation_id"])
    assert conv["sla"]["first_response"]["breached_at"] == "2026-03-23T10:00:00Z"


async def test_two_stores_firing_at_once_fire_once(tmp_path: Path, gateway_factory: Any) -> None:
    clock = Clock(at("2026-03-23 09:00"))
    cfg = config(tmp_path, sla=SLA)
    cfg["agents"][0]["presence"] = cfg["agents"][1]["presence"] = "offline"
    gw, client = await gateway_factory(cfg, clock=clock)
    for i in range(20):
        await client.inbound(f"m{i}", "help", sender=f"c{i}")
    await gw.deadlines.stop()  # only the two stores below fire
    planner = sla_planner(gw.config.routing)
    one, two = SqliteStore(tmp_path / "db.sqlite"), SqliteStore(tmp_path / "db.sqlite")
    await one.open()
    await two.open()
    try:
        now = at("2026-03-23 10:30")
        await asyncio.gather(*(s.sla_fire(now, planner) for s in (one, two, one, two)))
    finally:
        await one.close()
        await two.close()
    breached = await events(gw, "sla.breached")
    assert len(breached) == 20
    assert len({e.data["conversation_id"] for e in breached}) == 20


async def test_waiting_conversations_by_time_to_breach(
    tmp_path: Path, gateway_factory: Any
) -> None:
    clock = Clock(at("2026-03-23 09:00"))
    cfg = config(tmp_path, sla=SLA, order="sla")
    cfg["agents"][0]["presence"] = cfg["agents"][1]["presence"] = "offline"
    cfg["agents"][1]["capacity"] = {"default": 1}
    gw, client = await gateway_factory(cfg, clock=clock)
    _, older = await client.inbound("m1", "help", sender="std-1")
    clock.t += 60
    vip = {"from_": {"attributes": {"segment": "gold"}}}
    _, newer = await client.inbound("m2", "help", sender="vip-1", **vip)
    await gw.deadlines.run_once()
    status, _ = await client.call("PUT", "/v1/agents/bob/presence", json={"status": "online"})
    assert status in (200, 204)
    got = await wait_for(lambda: client.assigned(newer["conversation_id"]))
    assert got["assignee"] == "bob"  # the VIP one breaches first (30m vs 1h), though newer
    assert (await client.conversation(older["conversation_id"]))["assignee"] is None


# --- the long wait ---------------------------------------------------------------------------
async def test_the_long_wait_message_goes_out_once(tmp_path: Path, gateway_factory: Any) -> None:
    clock = Clock(at("2026-03-23 09:00"))
    cfg = config(tmp_path)
    cfg["agents"][0]["presence"] = cfg["agents"][1]["presence"] = "offline"
    cfg["notices"] = {"wait_after": "5m", "wait_channel_kinds": ["api"]}
    gw, client = await gateway_factory(cfg, clock=clock)
    _, first = await client.inbound("m1", "help", sender="a")
    _, second = await client.inbound(
        "m2", "help", sender="b", **{"from_": {"attributes": {"language": "de"}}}
    )
    await gw.deadlines.run_once()
    assert await bot_texts(client, first["conversation_id"]) == []
    clock.t += 301
    await gw.deadlines.run_once()
    await gw.deadlines.run_once()
    assert await bot_texts(client, first["conversation_id"]) == [
        "All our agents are busy. You are number 1 in the queue; the estimated wait is unknown."
    ]
    assert await bot_texts(client, second["conversation_id"]) == [
        "Alle unsere Mitarbeiter sind im Gespräch. Sie sind Nummer 2 in der Warteschlange; "
        "die geschätzte Wartezeit beträgt unbekannt."
    ]
    clock.t += 3600
    await gw.deadlines.run_once()
    assert len(await bot_texts(client, first["conversation_id"])) == 1


async def test_a_machine_gets_no_closed_reply_and_no_wait_message(
    tmp_path: Path, gateway_factory: Any
) -> None:
    from connectors.base import Identity, InboundMessage
    from gateway.ingest import ChannelInfo

    clock = Clock(at("2026-03-23 07:00"))  # closed
    cfg = config(tmp_path)
    cfg["notices"] = {"wait_after": "5m", "wait_channel_kinds": ["api"]}
    gw, client = await gateway_factory(cfg, clock=clock)
    api = ChannelInfo("api", "api")
    robot = InboundMessage("r1", Identity("api", "robot"), "I am out of office", automated=True)
    outcome = await gw.ingestor.submit(api, robot)
    assert outcome.conversation_id is not None
    await asyncio.sleep(0.2)
    assert await bot_texts(client, outcome.conversation_id) == []  # no closed reply
    # Open, nobody free, long past the wait threshold: still nothing for a machine.
    for agent in await gw.store.agent_states():
        await gw.services.set_presence(agent.id, "offline")
    clock.t = at("2026-03-23 09:00")
    await gw.deadlines.run_once()
    assert await bot_texts(client, outcome.conversation_id) == []
    # A person writing in the same state gets the wait message.
    person = InboundMessage("p1", Identity("api", "person"), "hello?")
    other = await gw.ingestor.submit(api, person)
    clock.t += 301
    await gw.deadlines.run_once()
    assert len(await bot_texts(client, other.conversation_id)) == 1
    assert await bot_texts(client, outcome.conversation_id) == []
