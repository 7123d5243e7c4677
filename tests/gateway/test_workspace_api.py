"""The agent workspace through the HTTP API (issue 14), on SQLite and PostgreSQL: roles
(supervisor, admin), the list's filters, sorts and keyset pages, counts, unread that
survives a new gateway, snooze waking on the clock and on a customer message, tags,
priority, transfer to an agent, and search."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.api.common import AUTH
from gateway.api.visibility import StreamFilter
from tests.gateway.conftest import ADMIN, agent_token, base_config, wait_for

SUPERVISOR = "test-supervisor-token"
LEAD = "test-lead-token"  # a supervisor of the billing queue only
FILLER = " ".join(f"word{i}" for i in range(2500))


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    if request.param == "postgres":
        cfg["store"] = {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}
    for agent in cfg["agents"]:
        agent["presence"] = "offline"  # nothing is routed: the tests assign by hand
    cfg["auth"]["tokens"] += [
        {"name": "Sam Super", "role": "supervisor", "token": SUPERVISOR},
        {"name": "Lea Lead", "role": "supervisor", "token": LEAD, "queues": ["billing"]},
    ]
    return cfg


async def conversation_of(client: Any, ext: str, text: str, sender: str) -> str:
    status, body = await client.inbound(ext, text, sender, from_={"name": f"Name {sender}"})
    assert status == 202, body
    return str(body["conversation_id"])


async def listing(client: Any, token: str = ADMIN, **params: Any) -> dict[str, Any]:
    status, body = await client.call("GET", "/v1/conversations", token=token, params=params)
    assert status == 200, body
    return dict(body)


async def test_roles_supervisor_and_admin(gateway_factory: Any, config: dict[str, Any]) -> None:
    _, client = await gateway_factory(config)
    general = await conversation_of(client, "g1", "hello there", "c1")
    billing = await conversation_of(client, "b1", "refund please", "c2")

    status, me = await client.call("GET", "/v1/me", token=LEAD)
    assert status == 200 and me["role"] == "supervisor" and me["queues"] == ["billing"]
    status, me = await client.call("GET", "/v1/me", token=agent_token("alice"))
    assert me["agent_name"] == "Alice" and me["queues"] == ["billing", "general"]
    status, me = await client.call("GET", "/v1/me", token=ADMIN)
    assert me["role"] == "admin" and me["queues"] is None

    # A supervisor sees its queues (all without), assigns to a named agent, resolves.
    assert {c["id"] for c in (await listing(client, SUPERVISOR))["conversations"]} == {
        general,
        billing,
    }
    assert [c["id"] for c in (await listing(client, LEAD))["conversations"]] == [billing]
    status, _ = await client.call("GET", f"/v1/conversations/{general}", token=LEAD)
    assert status == 404
    status, conv = await client.call(
        "POST", f"/v1/conversations/{billing}/assign", token=LEAD, json={"agent": "carol"}
    )
    assert status == 200 and conv["assignee"] == "carol"
    status, conv = await client.call("POST", f"/v1/conversations/{billing}/resolve", token=LEAD)
    assert status == 200 and conv["status"] == "resolved"
    status, conv = await client.call("POST", f"/v1/conversations/{billing}/reopen", token=LEAD)
    assert status == 200 and conv["status"] == "open"
    # Not the administration: capacity, the quarantine, forcing an assignment.
    status, _ = await client.call("GET", "/v1/quarantine", token=SUPERVISOR)
    assert status == 403
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{general}/assign",
        token=SUPERVISOR,
        json={"agent": "bob", "force": True},
    )
    assert status == 403
    # An agent still assigns only to itself, but hands its own over to a colleague.
    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{general}/assign",
        token=agent_token("alice"),
        json={"agent": "bob"},
    )
    assert status == 403
    await client.call(
        "POST",
        f"/v1/conversations/{general}/assign",
        token=agent_token("alice"),
        json={"agent": "alice"},
    )
    status, conv = await client.call(
        "POST",
        f"/v1/conversations/{general}/transfer",
        token=agent_token("alice"),
        json={"agent": "bob"},
    )
    assert status == 200 and conv["assignee"] == "bob"
    status, conv = await client.call(
        "POST",
        f"/v1/conversations/{general}/transfer",
        token=SUPERVISOR,
        json={"queue": "billing", "agent": "carol"},
    )
    assert status == 200 and (conv["queue"], conv["assignee"]) == ("billing", "carol")


async def test_list_filters_sorts_pages_and_counts(
    gateway_factory: Any, config: dict[str, Any]
) -> None:
    _, client = await gateway_factory(config)
    ids = [await conversation_of(client, f"m{n}", f"hello {n}", f"cust-{n}") for n in range(6)]

    # Unknown parameters are refused, naming them (they used to be ignored).
    for bad in ("q", "search", "assigned"):
        status, body = await client.call("GET", "/v1/conversations", params={bad: "x"})
        assert status == 400 and repr(bad) in body["error"]["message"], body
    status, body = await client.call("GET", "/v1/conversations", params={"sort": "size"})
    assert status == 400

    # Tags, priority, assignment: then each filter finds exactly its own.
    status, conv = await client.call(
        "POST", f"/v1/conversations/{ids[0]}/tags", json={"tags": ["vip", "refund"]}
    )
    assert status == 200 and conv["tags"] == ["vip", "refund"]
    status, body = await client.call(
        "POST", f"/v1/conversations/{ids[0]}/tags", json={"tags": ["two words"]}
    )
    assert status == 422
    status, conv = await client.call(
        "DELETE", f"/v1/conversations/{ids[0]}/tags", params={"tag": "refund"}
    )
    assert status == 200 and conv["tags"] == ["vip"]
    status, conv = await client.call(
        "POST", f"/v1/conversations/{ids[1]}/priority", json={"priority": "urgent"}
    )
    assert status == 200 and conv["priority"] == "urgent"
    await client.call("POST", f"/v1/conversations/{ids[2]}/assign", json={"agent": "alice"})
    await client.call("POST", f"/v1/conversations/{ids[3]}/resolve")
    await client.call(
        "POST",
        f"/v1/conversations/{ids[4]}/messages",
        json={"text": "we are on it", "agent": "bob"},
    )

    def only(page: dict[str, Any]) -> list[str]:
        return [c["id"] for c in page["conversations"]]

    assert only(await listing(client, tag="vip")) == [ids[0]]
    assert only(await listing(client, sort="-priority"))[0] == ids[1]
    assert only(await listing(client, assignee="alice")) == [ids[2]]
    assert only(await listing(client, token=agent_token("alice"), assignee="me")) == [ids[2]]
    assert only(await listing(client, status="resolved")) == [ids[3]]
    assert ids[3] not in only(await listing(client, status="active"))
    assert ids[4] not in only(await listing(client, waiting="true"))
    assert ids[2] not in only(await listing(client, assignee="none"))
    assert only(await listing(client, sort="created_at")) == ids
    assert only(await listing(client, sort="-last_message_at"))[0] == ids[4]
    page = await listing(client, tag="vip")
    item = page["conversations"][0]
    assert item["contact_name"] == "Name cust-0" and item["unread"] == 1 and item["waiting"]

    # Keyset pages: conversations arriving between two pages do not shift the next one.
    first = await listing(client, limit=2)
    assert only(first) == [ids[5], ids[4]] and first["next_cursor"]
    await conversation_of(client, "late", "hello late", "cust-late")
    second = await listing(client, limit=2, cursor=first["next_cursor"])
    assert only(second) == [ids[3], ids[2]]
    third = await listing(client, limit=2, cursor=second["next_cursor"])
    assert only(third) == [ids[1], ids[0]] and third["next_cursor"] is None
    status, _ = await client.call(
        "GET",
        "/v1/conversations",
        params={"cursor": first["next_cursor"], "sort": "created_at"},
    )
    assert status == 400  # a cursor of another sort

    status, counts = await client.call(
        "GET", "/v1/conversations/counts", token=agent_token("alice")
    )
    assert status == 200
    assert counts["views"]["mine"] == {"total": 1, "unread": 1}
    assert counts["status"]["resolved"] == 1 and counts["status"]["assigned"] == 1
    status, _ = await client.call("GET", "/v1/conversations/counts", params={"x": "1"})
    assert status == 400


async def test_unread_survives_a_new_gateway(gateway_factory: Any, config: dict[str, Any]) -> None:
    _, client = await gateway_factory(config)
    conv = await conversation_of(client, "u1", "first", "cust-u")
    await conversation_of(client, "u2", "second", "cust-u")
    alice = agent_token("alice")
    [item] = (await listing(client, alice))["conversations"]
    assert item["unread"] == 2
    detail = await client.conversation(conv)
    status, read = await client.call(
        "POST",
        f"/v1/conversations/{conv}/read",
        token=alice,
        json={"message_id": detail["messages"][0]["id"]},
    )
    assert status == 200 and read["unread"] == 1 and read["reader"] == "alice"
    # Another gateway on the same database (a reload, a restart): alice's marker is kept.
    _, again = await gateway_factory(config)
    [item] = (await listing(again, alice))["conversations"]
    assert item["unread"] == 1
    [item] = (await listing(again, agent_token("bob")))["conversations"]
    assert item["unread"] == 2  # bob has read nothing
    status, read = await again.call("POST", f"/v1/conversations/{conv}/read", token=alice, json={})
    assert read["unread"] == 0
    status, counts = await again.call("GET", "/v1/conversations/counts", token=alice)
    assert counts["views"]["unassigned"] == {"total": 1, "unread": 0}


async def test_snooze_wakes_on_time_and_when_the_customer_writes(
    gateway_factory: Any, config: dict[str, Any]
) -> None:
    clock = Clock(time.time())
    gw, client = await gateway_factory(config, clock=clock)
    conv = await conversation_of(client, "s1", "hello", "cust-s")
    other = await conversation_of(client, "s2", "hello", "cust-t")
    await client.call("POST", f"/v1/conversations/{conv}/assign", json={"agent": "alice"})

    def at(seconds: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.t + seconds))

    for until in (at(-60), "9999-12-31T23:59:59-01:00", "tomorrow", "2030-01-01T08:00:00"):
        status, body = await client.call(
            "POST", f"/v1/conversations/{conv}/snooze", json={"until": until}
        )
        assert status == 422, until
    status, body = await client.call(
        "POST", f"/v1/conversations/{conv}/snooze", json={"until": at(3600)}
    )
    assert status == 200 and body["status"] == "pending" and body["snoozed_until"] == at(3600)
    status, body = await client.call(
        "POST", f"/v1/conversations/{other}/snooze", json={"until": at(7200)}
    )
    assert [c["id"] for c in (await listing(client, status="snoozed"))["conversations"]] == [
        other,
        conv,
    ]
    clock.t += 3601
    gw.deadlines.poke()
    woken = await wait_for(lambda: _status(client, conv, "assigned"))
    assert woken["snoozed_until"] is None
    assert (await client.conversation(other))["status"] == "pending"
    # The customer writes before the time: back in the queue at once.
    await client.inbound("s3", "any news?", "cust-t")
    conv_other = await client.conversation(other)
    assert conv_other["status"] == "open" and conv_other["snoozed_until"] is None
    events = await wait_for(lambda: _woken(gw, 2))
    assert sorted(e.data["reason"] for e in events) == ["customer", "timer"]


async def _status(client: Any, conv: str, status: str) -> dict[str, Any] | None:
    got = await client.conversation(conv)
    return got if got["status"] == status else None


async def _woken(gw: Any, n: int) -> list[Any] | None:
    events = [e for e in await gw.store.events_since(0, 1000) if e.type == "conversation.woken"]
    return events if len(events) >= n else None


async def test_search_ranked_highlighted_and_scoped(
    gateway_factory: Any, config: dict[str, Any]
) -> None:
    _, client = await gateway_factory(config)
    text = f"{FILLER} the <b>Rückerstattung</b> for order 4711 {FILLER}"
    billing = await conversation_of(client, "f1", f"invoice {text}", "cust-f")
    await conversation_of(client, "f2", "nothing to see", "cust-g")
    status, body = await client.call("GET", "/v1/search", params={"q": "ruckerstat"})
    assert status == 200, body
    [hit] = body["results"]
    assert hit["kind"] == "message" and hit["conversation_id"] == billing
    assert hit["conversation"]["id"] == billing and hit["conversation"]["queue"] == "billing"
    # The match is marked; the customer's markup is never HTML (escaped on SQLite, dropped
    # by ts_headline on PostgreSQL): the only tags are <mark>s.
    assert "<mark>" in hit["snippet"] and "4711" in hit["snippet"]
    assert set(re.findall(r"<[^>]*>", hit["snippet"])) == {"<mark>", "</mark>"}
    status, body = await client.call("GET", "/v1/search", params={"q": "order 4711"})
    assert [h["conversation_id"] for h in body["results"]] == [billing]
    # A contact by name.
    status, body = await client.call("GET", "/v1/search", params={"q": "Name cust-g"})
    assert [h["kind"] for h in body["results"]] == ["contact"]
    # Only what the caller sees: bob's queues do not include billing.
    status, body = await client.call(
        "GET", "/v1/search", token=agent_token("bob"), params={"q": "4711"}
    )
    assert status == 200 and body["results"] == []
    status, body = await client.call("GET", "/v1/search", token=LEAD, params={"q": "4711"})
    assert [h["conversation_id"] for h in body["results"]] == [billing]
    for params in ({}, {"q": "!!"}, {"q": "x", "tag": "y"}):
        status, _ = await client.call("GET", "/v1/search", params=params)
        assert status == 400, params


async def test_each_action_is_an_event_each_console_sees_by_its_scope(
    gateway_factory: Any, config: dict[str, Any]
) -> None:
    gw, client = await gateway_factory(config)
    general = await conversation_of(client, "e1", "hello", "cust-e")
    billing = await conversation_of(client, "e2", "refund", "cust-f")
    start = await gw.store.last_event_id()
    for conv in (general, billing):
        await client.call("POST", f"/v1/conversations/{conv}/tags", json={"tags": ["x"]})
        await client.call("POST", f"/v1/conversations/{conv}/priority", json={"priority": "high"})
        await client.call("POST", f"/v1/conversations/{conv}/read", json={})
    events = await gw.store.events_since(start, 100)
    types = [(e.type, e.data["conversation_id"]) for e in events]
    for conv in (general, billing):
        for kind in ("conversation.tagged", "conversation.priority_changed", "conversation.read"):
            assert (kind, conv) in types
    # The stream's filter: the billing supervisor sees billing's events only; bob (general)
    # the general one's.
    lead = gw_principal(client, gw, LEAD)
    bob = gw_principal(client, gw, agent_token("bob"))
    seen_by_lead = {e.data["conversation_id"] for e in events if await allows(gw, lead, e)}
    seen_by_bob = {e.data["conversation_id"] for e in events if await allows(gw, bob, e)}
    assert seen_by_lead == {billing} and seen_by_bob == {general}
    status, counts = await client.call("GET", "/v1/conversations/counts", token=LEAD)
    assert (
        status == 200
        and counts["views"]["all"]["total"] == 1
        and counts["views"]["mine"]["total"] == 0
    )


def gw_principal(client: Any, gw: Any, token: str) -> Any:
    principal = gw.app[AUTH].lookup(token)
    assert principal is not None
    return principal


async def allows(gw: Any, principal: Any, event: Any) -> bool:
    return bool(await StreamFilter(gw.store, principal).allows(event))
