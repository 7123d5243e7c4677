"""Escalation steps, offers, no-reply reassignment, sticky routing and the offline policy
(issue 12), through a real gateway on an injected clock: timers fire from the stamps the
store keeps (`gw.deadlines.run_once()` after moving the clock), never by sleeping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from tests.gateway.conftest import Client, agent_token, base_config, wait_for
from tests.pg import PgServer


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sqlite_store(place: Path) -> dict[str, Any]:
    return {"path": str(place / "db.sqlite")}


def postgres_store(place: Path) -> dict[str, Any]:
    """A schema of its own per place on the session's private PostgreSQL (tests/pg.py):
    two gateways configured for one place share it, as a restart or two instances do."""
    return {"backend": "postgres", "dsn": PgServer.running().schema_dsn(place)}


# Where a test's gateway keeps its state: every test here runs on each store backend.
STORE: Callable[[Path], dict[str, Any]] = sqlite_store


@pytest.fixture(autouse=True, params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
        monkeypatch.setattr(f"{__name__}.STORE", postgres_store)
    return str(request.param)


def config(tmp_path: Path, **routing: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["store"] = STORE(tmp_path)
    cfg["routing"].update(routing)
    return cfg


async def settle(gw: Gateway) -> None:
    """Fire what is due and let routing run."""
    await gw.deadlines.run_once()
    await gw.dispatcher.run_pass()


async def stored_events(gw: Gateway, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.type, e.data)
        for e in await gw.store.events_since(0, 10_000)
        if e.type.startswith(prefix)
    ]


async def presence(client: Client, agent: str, status: str) -> None:
    code, body = await client.call("PUT", f"/v1/agents/{agent}/presence", json={"status": status})
    assert code == 200, body


# --- escalation --------------------------------------------------------------------------------

ESCALATION_RULE = {
    "name": "billing",
    "when": {"text": {"contains": ["refund", "invoice"]}},
    "then": {"queue": "billing", "skills": {"billing": 9}},
    "escalation": {
        "steps": [
            {"after": "5m", "skills": {"billing": 7}},
            {"after": "15m", "queue": "general", "clear_skills": True},
            {"after": "30m", "priority": "urgent"},
        ],
        "after_last": "notify",
        "notify_after": "10m",
    },
}


async def test_each_escalation_step_fires_at_its_time_and_is_on_the_api(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    cfg = config(tmp_path, rules=[ESCALATION_RULE])
    # Nobody reaches billing 9; bob (general only) is the only one online besides alice.
    cfg["agents"][0]["presence"] = "offline"  # alice (billing 8) away: billing needs carol
    gw, client = await gateway_factory(cfg, clock)
    code, body = await client.inbound("e1", "I want a refund")
    assert code == 202
    conv_id = body["conversation_id"]
    start = clock.t
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["assignee"] is None and conv["required_skills"] == {"billing": 9}
    esc = conv["escalation"]
    assert (esc["rule"], esc["step"], esc["of"]) == ("billing", 0, 3)
    assert esc["next_at"] == start + 300
    code, why = await client.call("POST", "/v1/routing/explain", json={"conversation": conv_id})
    assert code == 200 and why["classification"]["escalation"]["step"] == 0
    assert why["classification"]["rule"] == "billing"
    assert {c["agent"]: c["excluded"] for c in why["candidates"]} == {
        "alice": ["offline", "lacks skill billing>=9 (has 8)"],
        "carol": ["offline", "lacks skill billing>=9 (has 5)"],
    }
    assert (await client.call("POST", "/v1/routing/explain", json={}))[0] == 422

    # table: (seconds after start, expected step, queue, skills, priority, assignee)
    table = [
        (299, 0, "billing", {"billing": 9}, "normal"),
        (300, 1, "billing", {"billing": 7}, "normal"),
        (899, 1, "billing", {"billing": 7}, "normal"),
    ]
    for offset, step, queue, skills, priority in table:
        clock.t = start + offset
        await settle(gw)
        conv = await client.conversation(conv_id)
        assert conv["escalation"]["step"] == step, offset
        assert (conv["queue"], conv["required_skills"], conv["priority"]) == (
            queue,
            skills,
            priority,
        ), offset
        assert conv["assignee"] is None
    # Step 2 moves it to general without skills: bob takes it at once.
    clock.t = start + 900
    await settle(gw)
    conv = await wait_for(lambda: client.assigned(conv_id))
    assert (conv["queue"], conv["required_skills"], conv["assignee"]) == ("general", {}, "bob")
    assert conv["escalation"]["step"] == 2 and conv["escalation"]["waiting"] is False
    assert conv["escalation"]["next_at"] is None
    escalated = [d for t, d in await stored_events(gw, "conversation.escalat")]
    assert [d["step"] for d in escalated] == [1, 2]
    assert escalated[1]["changes"] == [
        "requires no skill any more (was billing>=7)",
        "moved to queue 'general' (was 'billing')",
    ]
    assert escalated[1]["changes_localized"]["de"] == [
        "erfordert keinen Skill mehr (vorher billing>=7)",
        "in Warteschlange 'general' verschoben (vorher 'billing')",
    ]
    # Assigned: the later steps never fire.
    clock.t = start + 3600
    await settle(gw)
    assert len(await stored_events(gw, "conversation.escalat")) == 2


async def test_steps_missed_while_down_fire_at_once_in_order_and_the_last_notifies(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    cfg = config(tmp_path, rules=[ESCALATION_RULE])
    for agent in cfg["agents"]:
        agent["presence"] = "offline"
    gw, client = await gateway_factory(cfg, clock)
    _, body = await client.inbound("e2", "invoice wrong")
    conv_id = body["conversation_id"]
    start = clock.t
    await settle(gw)
    await gw.stop()
    # Down for 40 minutes less a second: every step fell due; a new process fires them all
    # at once, in order.
    clock.t = start + 2399
    gw2, client2 = await gateway_factory(cfg, clock)
    await settle(gw2)
    conv = await client2.conversation(conv_id)
    assert (conv["queue"], conv["required_skills"], conv["priority"]) == ("general", {}, "urgent")
    assert conv["escalation"]["step"] == 3
    assert conv["escalation"]["next_at"] == start + 1800 + 600
    assert await stored_events(gw2, "conversation.escalation_exhausted") == []
    clock.t = start + 2400
    await settle(gw2)
    await settle(gw2)  # a second firing does nothing more
    exhausted = await stored_events(gw2, "conversation.escalation_exhausted")
    assert len(exhausted) == 1 and exhausted[0][1]["conversation_id"] == conv_id


# --- offers ------------------------------------------------------------------------------------


def offer_config(tmp_path: Path, away: bool = True) -> dict[str, Any]:
    cfg = config(tmp_path)
    cfg["routing"]["queues"][0]["offers"] = {
        "timeout": "30s",
        "channel_kinds": ["api"],
        "away_on_timeout": away,
    }
    cfg["agents"][2]["queues"] = ["general"]
    return cfg


async def answer(client: Client, conv_id: str, agent: str, what: str) -> tuple[int, Any]:
    return await client.call(
        "POST", f"/v1/conversations/{conv_id}/offer/{what}", token=agent_token(agent)
    )


async def loads(client: Client) -> dict[str, int]:
    _, body = await client.call("GET", "/v1/agents")
    return {a["id"]: a["load"].get("api", 0) for a in body["agents"]}


async def test_offer_chain_reject_then_timeout_then_accept(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    gw, client = await gateway_factory(offer_config(tmp_path), clock)
    _, body = await client.inbound("o1", "hello")
    conv_id = body["conversation_id"]
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["assignee"] is None and conv["status"] == "open"
    assert conv["offer"]["agent"] == "alice" and conv["offer"]["expires_at"] == clock.t + 30
    # A pending offer holds capacity.
    assert (await loads(client))["alice"] == 1
    # Bob was offered nothing: 404; alice's own token lists her offer.
    assert (await answer(client, conv_id, "bob", "accept"))[0] == 404
    _, mine = await client.call("GET", "/v1/offers", token=agent_token("alice"))
    assert [o["conversation_id"] for o in mine["offers"]] == [conv_id]

    # Alice rejects: the next agent (bob) gets the offer; alice's capacity is free again.
    code, _ = await answer(client, conv_id, "alice", "reject")
    assert code == 200
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["offer"]["agent"] == "bob"
    assert await loads(client) == {"alice": 0, "bob": 1, "carol": 0}

    # Bob lets it time out: expired, bob set away, nobody else online: it waits.
    clock.t += 30
    code, err = await answer(client, conv_id, "bob", "accept")  # due, not yet fired: late
    assert code == 409, err
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["offer"] is None and conv["assignee"] is None
    _, agents = await client.call("GET", "/v1/agents")
    assert {a["id"]: a["presence"] for a in agents["agents"]}["bob"] == "away"
    assert await loads(client) == {"alice": 0, "bob": 0, "carol": 0}
    # Explained as it stands: who is skipped and why, and that it waits.
    code, why = await client.call("POST", "/v1/routing/explain", json={"conversation": conv_id})
    assert code == 200, why
    assert {c["agent"]: c["excluded"] for c in why["candidates"]} == {
        "alice": ["declined or lost it lately"],
        "bob": ["away", "declined or lost it lately"],
        "carol": ["offline"],
    }
    assert why["decision"]["agent"] is None

    # Carol comes online: offered to her (alice rejected it lately), she accepts.
    await presence(client, "carol", "online")
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["offer"]["agent"] == "carol"
    code, accepted = await answer(client, conv_id, "carol", "accept")
    assert code == 200 and accepted["assignee"] == "carol" and accepted["status"] == "assigned"
    assert (await loads(client))["carol"] == 1
    # A second answer, or bob's late one, is refused.
    assert (await answer(client, conv_id, "carol", "accept"))[0] == 409
    assert (await answer(client, conv_id, "bob", "accept"))[0] == 409
    offer_events = [(t, d["agent"]) for t, d in await stored_events(gw, "offer.")]
    assert offer_events == [
        ("offer.created", "alice"),
        ("offer.rejected", "alice"),
        ("offer.created", "bob"),
        ("offer.expired", "bob"),
        ("offer.created", "carol"),
        ("offer.accepted", "carol"),
    ]


async def test_offers_survive_a_restart_and_expire_after_it(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    cfg = offer_config(tmp_path, away=False)
    gw, client = await gateway_factory(cfg, clock)
    _, body = await client.inbound("o2", "hello")
    conv_id = body["conversation_id"]
    await settle(gw)
    assert (await client.conversation(conv_id))["offer"]["agent"] == "alice"
    await gw.stop()
    clock.t += 60  # the offer timed out while the gateway was down
    gw2, client2 = await gateway_factory(cfg, clock)
    await settle(gw2)
    await settle(gw2)
    conv = await client2.conversation(conv_id)
    assert conv["offer"]["agent"] == "bob"  # alice's expired at start; bob is next
    _, agents = await client2.call("GET", "/v1/agents")
    assert {a["id"]: a["presence"] for a in agents["agents"]}["alice"] == "online"
    assert await loads(client2) == {"alice": 0, "bob": 1, "carol": 0}


async def test_manual_assignment_withdraws_a_pending_offer(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    gw, client = await gateway_factory(offer_config(tmp_path), clock)
    _, body = await client.inbound("o3", "hello")
    conv_id = body["conversation_id"]
    await settle(gw)
    code, _ = await client.call(
        "POST", f"/v1/conversations/{conv_id}/assign", json={"agent": "bob"}
    )
    assert code == 200
    assert await loads(client) == {"alice": 0, "bob": 1, "carol": 0}
    assert (await answer(client, conv_id, "alice", "accept"))[0] == 409
    conv = await client.conversation(conv_id)
    assert conv["offer"] is None and conv["assignee"] == "bob"


# --- no reply, sticky, offline -------------------------------------------------------------------


async def reply(client: Client, conv_id: str, agent: str) -> None:
    code, body = await client.call(
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        token=agent_token(agent),
        json={"text": "on it"},
    )
    assert code == 202, body


async def test_no_reply_requeues_to_another_agent_per_channel_kind(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    cfg = config(tmp_path)
    cfg["routing"]["queues"][0]["no_reply"] = {"after": "10m", "by_channel_kind": {"api": "2m"}}
    gw, client = await gateway_factory(cfg, clock)
    _, body = await client.inbound("n1", "hello")
    conv_id = body["conversation_id"]
    await settle(gw)
    assert (await client.conversation(conv_id))["assignee"] == "alice"
    start = clock.t
    # (seconds after the customer's message, assignee expected after firing)
    for offset, assignee in ((119, "alice"), (120, "bob"), (200, "bob")):
        clock.t = start + offset
        await settle(gw)
        assert (await client.conversation(conv_id))["assignee"] == assignee, offset
    requeued = await stored_events(gw, "conversation.requeued")
    assert [(d["from_agent"], d["reason"]) for _, d in requeued] == [("alice", "no_reply")]
    # Bob answers: no requeue however long the customer then waits for more.
    await reply(client, conv_id, "bob")
    clock.t = start + 3600
    await settle(gw)
    assert (await client.conversation(conv_id))["assignee"] == "bob"
    # The customer writes again; bob does not answer within 2 minutes: requeued, and alice
    # (skipped for 15 minutes after she lost it) may have it again now.
    await client.inbound("n2", "still there?")
    clock.t += 120
    await settle(gw)
    conv = await client.conversation(conv_id)
    assert conv["assignee"] == "alice"
    assert len(await stored_events(gw, "conversation.requeued")) == 2


async def test_sticky_routing_back_to_the_agent_who_answered_within_the_window(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    clock = Clock()
    cfg = config(tmp_path, sticky={"window": "1h"})
    cfg["conversations"] = {"reopen_window": "60s"}
    gw, client = await gateway_factory(cfg, clock)
    _, body = await client.inbound("s1", "hello", sender="dana")
    first = body["conversation_id"]
    await settle(gw)
    assert (await client.conversation(first))["assignee"] == "alice"
    await reply(client, first, "alice")
    await client.call("POST", f"/v1/conversations/{first}/resolve")
    # Reopened (within the reopen window): back to alice, though bob is next in turn.
    clock.t += 30
    await client.inbound("s2", "one more thing", sender="dana")
    await settle(gw)
    conv = await client.conversation(first)
    assert conv["assignee"] == "alice" and conv["status"] == "assigned"
    await client.call("POST", f"/v1/conversations/{first}/resolve")
    # A returning customer (a new conversation) 30 minutes later: alice again.
    clock.t += 1800
    _, body = await client.inbound("s3", "new question", sender="dana")
    second = body["conversation_id"]
    assert second != first
    await settle(gw)
    assert (await client.conversation(second))["assignee"] == "alice"
    assigned = [d for t, d in await stored_events(gw, "conversation.assigned")]
    assert assigned[-1]["strategy"] == "sticky"
    await client.call("POST", f"/v1/conversations/{second}/resolve")
    # Alice away: routed as usual (bob), not kept waiting for her.
    await presence(client, "alice", "away")
    clock.t += 120
    _, body = await client.inbound("s4", "hello again", sender="dana")
    await settle(gw)
    assert (await client.conversation(body["conversation_id"]))["assignee"] == "bob"
    await client.call("POST", f"/v1/conversations/{body['conversation_id']}/resolve")
    # Beyond the window (alice last answered > 1 h ago): routed as usual.
    await presence(client, "alice", "online")
    clock.t += 3600
    _, body = await client.inbound("s5", "hi", sender="dana")
    await settle(gw)
    last = await client.conversation(body["conversation_id"])
    assert last["routing"] and (
        [d for t, d in await stored_events(gw, "conversation.assigned")][-1]["strategy"]
        == "round_robin"
    )


async def test_offline_policy_requeues_after_the_grace_period_or_keeps(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    for policy, expected in (("requeue", "bob"), ("keep", "alice")):
        clock = Clock()
        cfg = config(tmp_path / policy, offline={"policy": policy, "grace": "5m"})
        (tmp_path / policy).mkdir()
        gw, client = await gateway_factory(cfg, clock)
        _, body = await client.inbound("f1", "hello")
        conv_id = body["conversation_id"]
        await settle(gw)
        assert (await client.conversation(conv_id))["assignee"] == "alice"
        await presence(client, "alice", "offline")
        went = clock.t
        clock.t = went + 299
        await settle(gw)
        assert (await client.conversation(conv_id))["assignee"] == "alice", policy
        # Back online within the grace period and off again: the grace starts over.
        await presence(client, "alice", "online")
        await presence(client, "alice", "offline")
        clock.t = went + 301
        await settle(gw)
        assert (await client.conversation(conv_id))["assignee"] == "alice", policy
        clock.t = went + 299 + 300
        await settle(gw)
        assert (await client.conversation(conv_id))["assignee"] == expected, policy
