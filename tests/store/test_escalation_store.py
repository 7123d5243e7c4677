"""The escalation role of the store (issue 12: escalation stamps, offers, no-reply and
offline reassignment, sticky hints) on every backend of `BACKENDS`, and two instances on one
database acting once on the same deadline."""

from __future__ import annotations

import asyncio

import pytest

from gateway.model import Event
from gateway.store import Conflict, NotFound, Store
from gateway.store.base import Claim, EscalationStore, OutboundRequest, WaitUpdate
from tests.store.test_contract import (  # noqa: F401 (fixtures)
    backend,
    inbound,
    ingest,
    pair,
    store,
)


def esc(one: Store) -> EscalationStore:
    assert isinstance(one, EscalationStore)
    return one


async def waiting(one: Store, ext: str, sender: str = "a@example.com", now: float = 1000.0) -> str:
    outcome = await ingest(one, inbound(ext, sender), now=now)
    return str(outcome.conversation.id)  # type: ignore[attr-defined]


def claim(cid: str, agent: str = "alice") -> Claim:
    return Claim(cid, agent, "email", 2, "general", "round_robin", ["least busy"])


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def load(one: Store, agent: str = "alice") -> int:
    return (await one.routing_snapshot()).loads.get((agent, "email"), 0)


async def test_a_wait_steps_once_across_two_instances_and_ends_when_assigned(
    pair: tuple[Store, Store],  # noqa: F811
) -> None:
    a, b = pair
    cid = await waiting(a, "w1")
    assert await esc(a).waits_next_due() == float("-inf")  # to be scheduled
    [stamp] = await esc(b).wait_stamps(1000.0, 10)
    assert (stamp.conversation_id, stamp.reason, stamp.since, stamp.step, stamp.state) == (
        cid,
        "created",
        1000.0,
        0,
        "new",
    )
    assert stamp.waiting and stamp.queue == "general" and stamp.due is None
    step = WaitUpdate(
        cid,
        1000.0,
        0,
        1,
        1300.0,
        "billing",
        2,
        {"billing": 7},
        [("conversation.escalated", {"conversation_id": cid, "step": 1})],
    )
    fired = await asyncio.gather(
        esc(a).waits_commit([step], 1001), esc(b).waits_commit([step], 1001)
    )
    assert sorted(len(f) for f in fired) == [0, 1]  # one instance acted
    assert await esc(a).waits_next_due() == 1300.0
    assert await esc(a).wait_stamps(1299.0, 10) == []
    [due] = await esc(b).wait_stamps(1300.0, 10)
    assert (due.step, due.state, due.due, due.queue, due.required_skills) == (
        1,
        "scheduled",
        1300.0,
        "billing",
        {"billing": 7},
    )
    conv = await a.get_conversation(cid)
    assert (conv.queue, conv.priority, conv.required_skills) == ("billing", 2, {"billing": 7})
    # Assigned: nothing more is due, and a late step of the old wait changes nothing.
    await a.claim([claim(cid)], 1100)
    assert await esc(a).waits_next_due() is None
    [idle] = await esc(a).wait_stamps(1400.0, 10, conversation_id=cid)
    assert idle.state == "idle" and not idle.waiting
    late = WaitUpdate(cid, 1000.0, 1, 2, None, "general", 1, {}, [("conversation.escalated", {})])
    assert await esc(b).waits_commit([late], 1400) == []
    # Requeued or reopened conversations start a new wait from step 0.
    await a.resolve(cid, "admin", None, 1500)
    await a.reopen(cid, "admin", 1600)
    [again] = await esc(a).wait_stamps(1600.0, 10, conversation_id=cid)
    assert (again.reason, again.since, again.step, again.state) == ("reopened", 1600.0, 0, "new")
    await esc(a).waits_reschedule()
    assert await esc(a).waits_next_due() == float("-inf")


async def test_an_offer_holds_capacity_until_accepted_and_is_made_once(
    pair: tuple[Store, Store],  # noqa: F811
) -> None:
    a, b = pair
    cid = await waiting(a, "o1")
    made = await asyncio.gather(
        esc(a).offer_create([(claim(cid), 1060.0)], 1000),
        esc(b).offer_create([(claim(cid, "bob"), 1060.0)], 1000),  # bob is offline
    )
    assert made[0][0] == [cid] and made[1][0] == []
    assert types(made[0][1]) == ["offer.created"]
    again, _ = await esc(b).offer_create([(claim(cid), 1070.0)], 1001)
    assert again == []  # one pending offer per conversation
    [offer] = await esc(b).offers(agent_id="alice")
    assert (offer.conversation_id, offer.status, offer.expires_at) == (cid, "pending", 1060.0)
    assert await esc(a).offers(conversation_id=cid) == [offer]
    assert await esc(a).offers_next_due() == 1060.0
    assert await load(a) == 1  # the offer holds a unit, as an assignment does
    hints = await esc(b).routing_hints([cid], 1001, 900, None)
    assert hints[cid].offered
    with pytest.raises(NotFound):
        await esc(a).offer_answer(cid, "bob", True, 1010, None)
    conv, events = await esc(b).offer_answer(cid, "alice", True, 1010, None)
    assert (conv.status, conv.assignee) == ("assigned", "alice")
    assert types(events) == ["offer.accepted", "conversation.assigned"]
    assert events[1].data["reasons"][-2:] == ["least busy", "offer accepted by alice"]
    assert await load(a) == 1  # the offer's unit became the assignment's
    assert await esc(a).offers() == [] and await esc(a).offers_next_due() is None
    with pytest.raises(Conflict, match="the offer is accepted"):
        await esc(a).offer_answer(cid, "alice", False, 1011, None)


async def test_a_rejected_or_withdrawn_offer_gives_its_unit_back(store: Store) -> None:  # noqa: F811
    rejected, withdrawn = await waiting(store, "r1"), await waiting(store, "r2", "b@example.com")
    done, _ = await esc(store).offer_create(
        [(claim(rejected), 1060.0), (claim(withdrawn), 1060.0)], 1000
    )
    assert done == [rejected, withdrawn] and await load(store) == 2
    _, events = await esc(store).offer_answer(rejected, "alice", False, 1010, None)
    assert types(events) == ["offer.rejected"] and await load(store) == 1
    hints = await esc(store).routing_hints([rejected], 1011, 900, None)
    assert hints[rejected].exclude == frozenset({"alice"}) and not hints[rejected].offered
    assert (await esc(store).routing_hints([rejected], 1911, 900, None)) == {}
    # Assigned by hand meanwhile: the offer is withdrawn, alice's unit given back.
    await store.assign(withdrawn, "bob", None, "admin", 1020)
    assert await esc(store).offers() == [] and await load(store) == 0
    with pytest.raises(Conflict, match="withdrawn"):
        await esc(store).offer_answer(withdrawn, "alice", True, 1030, None)
    # Too late: an expired offer is a conflict even before the timer marked it.
    late = await waiting(store, "r3", "c@example.com")
    await esc(store).offer_create([(claim(late), 1060.0)], 1000)
    with pytest.raises(Conflict, match="expired"):
        await esc(store).offer_answer(late, "alice", True, 1060, None)


async def test_offers_expire_once_across_two_instances(
    pair: tuple[Store, Store],  # noqa: F811
) -> None:
    a, b = pair
    cid = await waiting(a, "x1")
    await esc(a).offer_create([(claim(cid), 1060.0)], 1000)
    assert await esc(b).offers_expire(1059, frozenset({"general"})) == []
    fired = await asyncio.gather(
        esc(a).offers_expire(1060, frozenset({"general"})),
        esc(b).offers_expire(1060, frozenset({"general"})),
    )
    events = [e for f in fired for e in f]
    assert sorted(types(events)) == ["agent.presence", "offer.expired"]
    presence = next(e for e in events if e.type == "agent.presence")
    assert presence.data == {"agent": "alice", "status": "away", "reason": "offer timed out"}
    assert {s.id: s.presence for s in await a.agent_states()}["alice"] == "away"
    assert await load(a) == 0 and await esc(a).offers() == []
    assert (await esc(b).routing_hints([cid], 1061, 900, None))[cid].exclude == {"alice"}
    with pytest.raises(Conflict, match="expired"):
        await esc(a).offer_answer(cid, "alice", True, 1062, None)


async def test_no_reply_and_offline_requeue_once_and_sticky_goes_back(
    pair: tuple[Store, Store],  # noqa: F811
) -> None:
    a, b = pair
    first = await waiting(a, "n1")
    await a.claim([claim(first)], 1001)
    [stamp] = await esc(a).awaiting_reply()
    assert (stamp.conversation_id, stamp.agent_id, stamp.last_inbound_at) == (first, "alice", 1000)
    await a.add_outbound(OutboundRequest(first, "on it", "agent", "alice", 1002))
    assert await esc(a).awaiting_reply() == []
    # The customer writes again; no answer: requeued once, whichever instance fires.
    await ingest(a, inbound("n2"), now=1100)
    [stamp] = await esc(b).awaiting_reply()
    assert stamp.last_inbound_at == 1100
    assert await esc(a).requeue(first, "alice", "no_reply", 1200, expect_last_inbound_at=1000) == []
    fired = await asyncio.gather(
        esc(a).requeue(first, "alice", "no_reply", 1200, expect_last_inbound_at=1100),
        esc(b).requeue(first, "alice", "no_reply", 1200, expect_last_inbound_at=1100),
    )
    events = [e for f in fired for e in f]
    assert types(events) == ["conversation.requeued"]
    assert events[0].data["conversation"]["status"] == "open" and await load(a) == 0
    [wait] = await esc(a).wait_stamps(1200, 10, conversation_id=first)
    assert (wait.reason, wait.since, wait.state) == ("requeued", 1200.0, "new")
    assert (await esc(a).routing_hints([first], 1201, 900, None))[first].exclude == {"alice"}
    # Sticky: the reopened conversation goes back to alice, who answered it within 1h (the
    # requeue's decline is past); a new conversation of the customer too, in a longer window.
    await a.resolve(first, "admin", None, 1300)
    assert (await ingest(a, inbound("n3"), now=1400)).reopened  # type: ignore[attr-defined]
    assert (await esc(b).routing_hints([first], 1400, 100, None)) == {}
    assert (await esc(b).routing_hints([first], 1400, 100, 3600.0))[first].sticky == "alice"
    assert (await esc(b).routing_hints([first], 1002 + 3601, 100, 3600.0)) == {}
    await a.resolve(first, "admin", None, 1500)
    later = 1500 + 8 * 86400.0
    second = await waiting(a, "n4", now=later)
    assert second != first
    assert (await esc(b).routing_hints([second], later, 100, 9 * 86400.0))[second].sticky == "alice"
    assert (await esc(b).routing_hints([second], later, 100, 3600.0)) == {}
    # Offline with assigned conversations: requeued once, only if still offline since then.
    await a.claim([claim(second)], later + 1)
    await a.set_presence("alice", "offline", later + 2)
    assert await esc(b).offline_agents() == [("alice", later + 2)]
    await a.set_presence("alice", "offline", later + 3)  # no change: still since then
    assert await esc(a).requeue(None, "alice", "offline", later + 9, expect_offline_since=1) == []
    fired = await asyncio.gather(
        esc(a).requeue(None, "alice", "offline", later + 9, expect_offline_since=later + 2),
        esc(b).requeue(None, "alice", "offline", later + 9, expect_offline_since=later + 2),
    )
    assert [e.data["conversation_id"] for f in fired for e in f] == [second]
    assert await esc(a).offline_agents() == []
