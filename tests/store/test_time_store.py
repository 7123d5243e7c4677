"""The store's part in SLAs and the wait queue (TimeStore), on every backend of
tests/store/test_contract.py: the timer reads what changed from the event log, fires each
warning and breach once however many instances run it at once, acts on a breach once, and
notices go out once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.base import Identity, InboundMessage
from gateway.config import load_config_text
from gateway.store import Store
from gateway.store.base import IngestRequest
from gateway.store.timekeeping import NO_DUE, SlaPlanner, TimeStore
from gateway.time.sla import sla_planner
from tests.gateway.conftest import base_config, config_text
from tests.store.test_contract import BACKENDS, WEEK, BackendFactory, classify_to

H = 3600.0
T0 = 1_774_000_000.0  # any instant: no business hours configured, the clocks run 24/7
SLA = {
    "warning": "10m",
    "policies": [
        {
            "name": "vip",
            "when": {"segment": ["gold"]},
            "first_response": "30m",
            "on_breach": {"bump_priority": True, "move_to": "night"},
        },
        {"name": "standard", "first_response": "1h", "resolution": "4h"},
    ],
}


def planner(tmp_path: Path) -> SlaPlanner:
    cfg = base_config(tmp_path / "unused.sqlite")
    cfg["routing"]["queues"].append({"name": "night"})
    cfg["routing"]["sla"] = SLA
    return sla_planner(load_config_text(config_text(cfg), env={}).config.routing)


def times(store: Store) -> TimeStore:
    assert isinstance(store, TimeStore)
    return store


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
    return BACKENDS[request.param]


@pytest.fixture
async def pair(backend: BackendFactory, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one database: two gateway instances."""
    one, two = backend(tmp_path), backend(tmp_path)
    await one.open()
    await two.open()
    yield one, two
    await one.close()
    await two.close()


async def waiting(
    store: Store, ext: str, sender: str, now: float, gold: bool = False, automated: bool = False
) -> str:
    msg = InboundMessage(
        ext,
        Identity("email", sender),
        "help",
        contact_attributes={"segment": "gold"} if gold else {},
        automated=automated,
    )
    out = await store.ingest(IngestRequest("mail", "email", msg, classify_to(), now, WEEK))  # type: ignore[arg-type]
    return out.conversation.id


async def test_two_instances_firing_at_once_fire_and_act_once(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    one, two = pair
    plan = planner(tmp_path)
    convs = [await waiting(one, f"m{i}", f"c{i}@example.com", T0) for i in range(20)]
    vip = await waiting(one, "v", "vip@example.com", T0, gold=True)
    now = T0 + 1.5 * H  # every first response (1h, VIP 30m) fell due: warning and breach
    fired = await asyncio.gather(*(times(s).sla_fire(now, plan) for s in (one, two, one, two)))
    events = [e for batch in fired for e in batch]
    breached = [e for e in events if e.type == "sla.breached"]
    assert sorted(e.data["conversation_id"] for e in breached) == sorted([*convs, vip])
    warned = [e for e in events if e.type == "sla.warning"]
    assert sorted(e.data["conversation_id"] for e in warned) == sorted([*convs, vip])
    [vip_breach] = [e for e in breached if e.data["conversation_id"] == vip]
    assert vip_breach.data["actions"] == [
        "priority raised to high",
        "moved from queue general to night",
    ]
    moved = [e for e in events if e.type == "conversation.transferred"]
    assert [(e.data["conversation_id"], e.data["by"]) for e in moved] == [(vip, "sla")]
    conv = await two.get_conversation(vip)
    assert (conv.queue, conv.priority) == ("night", 2)
    # The log holds what the calls returned, once each; a later pass adds no alarm.
    logged = await one.events_since(0, 10_000)
    assert [e.id for e in logged if e.type.startswith("sla.")] == sorted(
        e.id for e in events if e.type.startswith("sla.")
    )
    later = await times(two).sla_fire(now + 60, plan)
    assert [e.type for e in later if e.type.startswith("sla.")] == []


async def test_the_timer_reads_changes_then_sleeps_until_the_next_warning(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    one, two = pair
    plan = planner(tmp_path)
    assert await times(one).sla_next_due(T0) is None  # nothing to watch
    cid = await waiting(one, "m1", "dana@example.com", T0)
    assert await times(two).sla_next_due(T0 + 1) == T0 + 1  # a change not read yet
    assert await times(two).sla_fire(T0 + 1, plan) == []
    # The first response is due at T0 + 1h; its warning 10 minutes before.
    assert await times(one).sla_next_due(T0 + 2) == T0 + H - 600
    sla = await times(one).sla_of([cid, "nope"])
    assert list(sla) == [cid] and sla[cid]["policy"] == "standard"
    assert sla[cid]["targets"]["first_response"]["due_at"] == T0 + H
    # In the order the policy names them, as the API shows them.
    assert list(sla[cid]["targets"]) == ["first_response", "resolution"]
    assert sla[cid]["fired"] == {}
    [warning] = await times(two).sla_fire(T0 + H - 600, plan)
    assert (warning.type, warning.data["target"]) == ("sla.warning", "first_response")
    assert (await times(one).sla_of([cid]))[cid]["fired"]["first_response"]["warning"] == (
        T0 + H - 600
    )
    # Due: the breach fires once; then the resolution's warning is the next wake-up.
    [breach] = await times(one).sla_fire(T0 + H, plan)
    assert (breach.type, breach.data["target"]) == ("sla.breached", "first_response")
    assert await times(two).sla_fire(T0 + H + 1, plan) == []
    assert await times(two).sla_next_due(T0 + H + 2) == T0 + 4 * H - 600


async def test_waiting_order_by_sla_due(pair: tuple[Store, Store], tmp_path: Path) -> None:
    one, two = pair
    plan = planner(tmp_path)
    older = await waiting(one, "m1", "std@example.com", T0)
    newer = await waiting(one, "m2", "vip@example.com", T0 + 60, gold=True)
    state = await one.routing_state()
    [group] = state.waiting_groups
    # Before the timer ran, neither has a due time: oldest first.
    page = await times(two).waiting_page_sla(group, None, 10)
    assert [(w.id, w.sla_due) for w in page] == [(older, NO_DUE), (newer, NO_DUE)]
    await times(one).sla_fire(T0 + 120, plan)
    page = await times(two).waiting_page_sla(group, None, 1)
    assert [(w.id, w.sla_due) for w in page] == [(newer, T0 + 60 + 1800)]  # VIP: 30m
    last = page[0]
    rest = await times(two).waiting_page_sla(
        group, (last.priority, last.sla_due, last.created_at, last.id), 10
    )
    assert [(w.id, w.sla_due) for w in rest] == [(older, T0 + H)]


async def test_notices_go_out_once_and_seats_count_per_queue(pair: tuple[Store, Store]) -> None:
    one, two = pair
    a = await waiting(one, "m1", "a@example.com", T0)
    b = await waiting(one, "m2", "b@example.com", T0 + 1, automated=True)
    seats = await times(two).waiting_seats(["email"], 10)
    assert [(s.conversation_id, s.queue, s.position, s.automated) for s in seats] == [
        (a, "general", 1, False),
        (b, "general", 2, True),
    ]
    assert seats[0].channel == "mail"
    assert await times(two).waiting_seats(["sms"], 10) == []
    assert await times(two).waiting_seats(["email"], 1) == seats[:1]
    got = await asyncio.gather(*(times(s).notice_once(a, "wait", T0 + 5) for s in (one, two)))
    assert sorted(got) == [False, True]  # two instances: one sends it
    assert await times(one).notice_once(a, "closed", T0 + 6) is True
    assert await times(two).noticed([a, b], "wait") == {a}
    assert await times(two).noticed([], "wait") == set()
