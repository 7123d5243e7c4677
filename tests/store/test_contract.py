"""The store's behaviour, parametrised by backend: a new backend only has to pass this.

A backend is a factory in `BACKENDS`: given a place (a per-test directory), it returns a
store object on that place's database; called twice with the same place it gives two
store objects on one database — two instances of the gateway, as two processes or two
hosts would be (the two-instance cases at the end). PostgreSQL: a schema per place on the
session's private server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from connectors.base import DeliveryResult, Identity, InboundMessage
from gateway.store import Conflict, NotFound, SqliteStore, Store
from gateway.store.base import (
    Claim,
    Classification,
    ConversationFilter,
    Forbidden,
    IngestRequest,
    OutboundRequest,
    Scope,
    Unstorable,
)
from gateway.store.postgres import PostgresStore
from tests.pg import PgServer

WEEK = 7 * 86400.0


BackendFactory = Callable[[Path], Store]

BACKENDS: dict[str, BackendFactory] = {
    "sqlite": lambda place: SqliteStore(place / "store.db"),
    # A schema per place on the session's private PostgreSQL server (tests/pg.py).
    "postgres": lambda place: PostgresStore(PgServer.running().schema_dsn(place)),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> BackendFactory:
    if request.param == "postgres":
        request.getfixturevalue("pg_server")  # the session's server, started once
    return BACKENDS[request.param]


@pytest.fixture
async def store(backend: BackendFactory, tmp_path: Path) -> AsyncIterator[Store]:
    one = backend(tmp_path)
    await one.open()
    await one.sync_agents([("alice", "online", {"default": 2}), ("bob", "offline", {"default": 1})])
    yield one
    await one.close()


@pytest.fixture
async def pair(
    store: Store, backend: BackendFactory, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one database: two instances of the gateway."""
    other = backend(tmp_path)
    await other.open()
    yield store, other
    await other.close()


def classify_to(
    queue: str = "general", priority: int = 1, skills: dict[str, int] | None = None
) -> object:
    return lambda attrs: Classification(queue, priority, skills or {}, [], None, ["test"])


def inbound(
    ext: str, sender: str = "a@example.com", text: str = "hello", **kw: object
) -> InboundMessage:
    return InboundMessage(external_id=ext, sender=Identity("email", sender), text=text, **kw)  # type: ignore[arg-type]


async def ingest(
    store: Store, msg: InboundMessage, now: float = 1000.0, channel: str = "mail"
) -> object:
    return await store.ingest(
        IngestRequest(channel, "email", msg, classify_to(), now, WEEK)  # type: ignore[arg-type]
    )


async def test_duplicate_external_id_is_stored_once(store: Store) -> None:
    first = await ingest(store, inbound("x1"))
    again = await ingest(store, inbound("x1", text="changed"))
    assert again.duplicate and not first.duplicate
    assert again.message.id == first.message.id and again.conversation.id == first.conversation.id
    assert [m.text for m in await store.messages(first.conversation.id)] == ["hello"]
    # The same external id on another channel is another message.
    other = await ingest(store, inbound("x1"), channel="other")
    assert not other.duplicate


async def test_one_contact_one_open_conversation(store: Store) -> None:
    a = await ingest(store, inbound("1", "dana@example.com"))
    b = await ingest(store, inbound("2", "dana@example.com"), now=1001)
    assert a.created and not b.created
    assert a.conversation.id == b.conversation.id
    assert a.contact_id == b.contact_id
    contact = await store.find_contact(Identity("email", "dana@example.com"))
    assert contact.id == a.contact_id
    types = [e.type for e in a.events]
    assert types == ["contact.created", "conversation.created", "message.received"]


async def test_reopen_window(store: Store) -> None:
    a = await ingest(store, inbound("1"))
    await store.resolve(a.conversation.id, "admin", None, 2000)
    within = await ingest(store, inbound("2"), now=2000 + WEEK - 1)
    assert within.reopened and within.conversation.id == a.conversation.id
    assert within.conversation.status == "open"
    await store.resolve(a.conversation.id, "admin", None, 3000)
    later = await ingest(store, inbound("3"), now=3000 + WEEK + 1)
    assert later.created and later.conversation.id != a.conversation.id


async def test_thread_refs_join_only_the_same_contacts_conversation(store: Store) -> None:
    a = await ingest(store, inbound("1", provider_message_id="<m1@x>"))
    await store.resolve(a.conversation.id, "admin", None, 1500)
    # Another customer quoting the same Message-ID does not land in a's conversation.
    stranger = await ingest(
        store, inbound("2", "eve@example.com", thread_refs=["<m1@x>"]), now=1600
    )
    assert stranger.created and stranger.conversation.id != a.conversation.id
    reply = await ingest(store, inbound("3", thread_refs=["<zzz@x>", "<m1@x>"]), now=1700)
    assert reply.conversation.id == a.conversation.id and reply.reopened
    token = a.conversation.thread_token
    assert token
    by_token = await ingest(store, inbound("4", thread_token=token), now=1800)
    assert by_token.conversation.id == a.conversation.id


async def test_claim_is_compare_and_set_and_respects_capacity(store: Store) -> None:
    convs = []
    for i in range(3):
        out = await ingest(store, inbound(str(i), f"c{i}@example.com"), now=1000 + i)
        convs.append(out.conversation.id)
    claims = [Claim(c, "alice", "email", 2, "general", "round_robin", ["r"]) for c in convs]
    claimed, events = await store.claim(claims, 2000)
    assert claimed == convs[:2]  # capacity 2
    assert [e.data["agent"] for e in events] == ["alice", "alice"]
    again, _ = await store.claim(claims[:1], 2001)
    assert again == []  # already assigned
    offline, _ = await store.claim([Claim(convs[2], "bob", "email", 1, "general", "rr", [])], 2002)
    assert offline == []  # bob is offline
    snap = await store.routing_snapshot()
    assert [w.id for w in snap.waiting] == [convs[2]]
    assert snap.loads[("alice", "email")] == 2
    assert snap.rr_last == {"general": "alice"}


async def test_claim_checks_capacity_as_it_is_at_commit(store: Store) -> None:
    # The router planned with alice at 0/2; an admin lowers her capacity to 1 before the
    # claim commits: only one conversation may be hers, whatever the plan believed.
    convs = [
        (await ingest(store, inbound(str(i), f"d{i}@example.com"), now=1000 + i)).conversation.id
        for i in range(2)
    ]
    await store.set_capacity("alice", {"default": 1}, 1500)
    claims = [Claim(c, "alice", "email", 2, "general", "round_robin", []) for c in convs]
    claimed, _ = await store.claim(claims, 2000)
    assert claimed == convs[:1]
    # A capacity per channel kind wins over the default.
    await store.set_capacity("alice", {"default": 5, "email": 1}, 2100)
    again, _ = await store.claim(claims[1:], 2200)
    assert again == []


async def test_waiting_is_read_by_queue_in_routing_order_a_page_at_a_time(store: Store) -> None:
    async def open_in(
        queue: str, priority: int, ext: str, now: float, skills: dict[str, int] | None = None
    ) -> str:
        out = await store.ingest(
            IngestRequest(
                "mail",
                "email",
                inbound(ext, f"{ext}@example.com"),
                classify_to(queue, priority, skills or {}),
                now,
                WEEK,  # type: ignore[arg-type]
            )
        )
        return out.conversation.id

    normal_old = await open_in("general", 1, "n1", 1000)
    urgent_new = await open_in("general", 3, "u1", 3000)
    normal_new = await open_in("general", 1, "n2", 2000)
    billing = await open_in("billing", 1, "b1", 500)
    skilled = await open_in("general", 1, "s1", 100, {"de": 3})
    state = await store.routing_state(count_waiting=True)
    groups = {(g.channel_kind, g.queue, str(g.required_skills)): g for g in state.waiting_groups}
    assert sorted(groups) == [
        ("email", "billing", "{}"),
        ("email", "general", "{'de': 3}"),
        ("email", "general", "{}"),
    ]
    assert state.waiting_count == 5
    assert state.heads == {}  # asked for none
    heads = (await store.routing_state(head=2)).heads
    assert [w.id for w in heads[groups[("email", "general", "{}")]]] == [urgent_new, normal_old]
    assert [w.id for w in heads[groups[("email", "billing", "{}")]]] == [billing]
    assert state.loads == {} and {a.id for a in state.agents} == {"alice", "bob"}
    general = groups[("email", "general", "{}")]
    page = await store.waiting_page(general, None, 2)
    assert [w.id for w in page] == [urgent_new, normal_old]
    last = page[-1]
    rest = await store.waiting_page(general, (last.priority, last.created_at, last.id), 10)
    assert [w.id for w in rest] == [normal_new]
    page = await store.waiting_page(groups[("email", "general", "{'de': 3}")], None, 10)
    assert [(w.id, w.required_skills) for w in page] == [(skilled, {"de": 3})]
    await store.claim([Claim(billing, "alice", "email", 2, "billing", "rr", [])], 4000)
    state = await store.routing_state()
    assert [g.queue for g in state.waiting_groups] == ["general", "general"]
    assert state.waiting_count is None
    assert state.loads == {("alice", "email"): 1} and state.rr_last == {"billing": "alice"}


async def test_manual_assignment_checks_capacity_as_it_is_at_commit(store: Store) -> None:
    # The API read alice's capacity (2) before an admin lowered it to 1: the assignment that
    # would make her 2/1 is refused.
    convs = [
        (await ingest(store, inbound(str(i), f"m{i}@example.com"), now=1000 + i)).conversation.id
        for i in range(2)
    ]
    await store.assign(convs[0], "alice", 2, "admin", 1100)
    await store.set_capacity("alice", {"default": 1}, 1150)
    with pytest.raises(Conflict):
        await store.assign(convs[1], "alice", 2, "admin", 1200)
    # Forced (no capacity given), it is still possible.
    c, _ = await store.assign(convs[1], "alice", None, "admin", 1300)
    assert c.assignee == "alice"


async def test_concurrent_claims_never_exceed_capacity(store: Store) -> None:
    ids = [
        (await ingest(store, inbound(str(i), f"k{i}@example.com"))).conversation.id
        for i in range(10)
    ]
    results = await asyncio.gather(
        *(store.claim([Claim(c, "alice", "email", 2, "general", "rr", [])], 2000) for c in ids)
    )
    assert sum(len(r[0]) for r in results) == 2


async def test_outbound_and_outbox_lifecycle(store: Store) -> None:
    conv = (await ingest(store, inbound("1", provider_message_id="<in@x>"))).conversation
    msg, events = await store.add_outbound(
        OutboundRequest(conv.id, "hi back", "agent", "alice", 1100)
    )
    assert msg.status == "queued" and events[0].type == "message.queued"
    assert (await store.get_conversation(conv.id)).first_response_at == 1100
    items = await store.outbox_lease(1100, 10, 30)
    assert [i.message_id for i in items] == [msg.id]
    assert items[0].to == Identity("email", "a@example.com")
    assert items[0].thread_refs == ["<in@x>"]
    assert await store.outbox_lease(1101, 10, 30) == []  # leased
    assert await store.outbox_record(msg.id, DeliveryResult.retry("busy"), 1200, 1101) == []
    assert await store.outbox_lease(1150, 10, 30) == []  # not due yet
    items = await store.outbox_lease(1200, 10, 30)
    assert items[0].attempts == 1
    events = await store.outbox_record(msg.id, DeliveryResult.sent("prov-1"), None, 1201)
    assert [e.type for e in events] == ["message.sent"]
    assert await store.outbox_next_due() is None
    receipt = await store.apply_receipt("mail", "prov-1", "delivered", None, 1300)
    assert [e.type for e in receipt] == ["message.delivered"]
    assert await store.apply_receipt("mail", "prov-1", "sent", None, 1301) == []  # never backwards


async def test_outbox_failure_and_crash_recovery(store: Store) -> None:
    conv = (await ingest(store, inbound("1"))).conversation
    msg, _ = await store.add_outbound(OutboundRequest(conv.id, "x", "agent", "alice", 1100))
    await store.outbox_lease(1100, 10, 1000)
    # A crash leaves the lease behind; release makes the work due again at once.
    assert await store.outbox_release_all() == 1
    assert len(await store.outbox_lease(1101, 10, 30)) == 1
    events = await store.outbox_record(msg.id, DeliveryResult.failed("HTTP 400"), None, 1102)
    assert events[0].type == "message.failed"
    assert events[0].data["message"]["reason"] == "HTTP 400"


async def test_lifecycle_rules(store: Store) -> None:
    conv = (await ingest(store, inbound("1"))).conversation
    with pytest.raises(NotFound):
        await store.get_conversation("cv_missing")
    c, ev = await store.assign(conv.id, "alice", 2, "admin", 1100)
    assert c.assignee == "alice" and c.status == "assigned"
    with pytest.raises(Forbidden):  # bob may not resolve alice's
        await store.resolve(conv.id, "bob", Scope(agent="bob"), 1101)
    c, ev = await store.transfer(conv.id, "billing", "alice", Scope(agent="alice"), 1102)
    assert c.assignee is None and c.queue == "billing" and ev[0].type == "conversation.transferred"
    c, _ = await store.resolve(conv.id, "admin", None, 1103)
    assert c.status == "resolved" and c.resolved_at == 1103
    with pytest.raises(Conflict):
        await store.resolve(conv.id, "admin", None, 1104)
    c, _ = await store.reopen(conv.id, "admin", 1105)
    assert c.status == "open" and c.resolved_at is None


async def test_events_are_ordered_and_resumable(store: Store) -> None:
    await ingest(store, inbound("1"))
    await ingest(store, inbound("2"), now=1001)
    everything = await store.events_since(0, 100)
    ids = [e.id for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert await store.events_since(ids[2], 100) == everything[3:]
    assert await store.last_event_id() == ids[-1]


async def test_presence_and_capacity(store: Store) -> None:
    ev = await store.set_presence("bob", "online", 10)
    assert ev[0].data == {"agent": "bob", "status": "online"}
    await store.set_capacity("bob", {"default": 5}, 11)
    states = {s.id: s for s in await store.agent_states()}
    assert states["bob"].presence == "online" and states["bob"].capacity_for("email") == 5
    with pytest.raises(NotFound):
        await store.set_presence("nobody", "online", 12)


async def test_kv_and_leases(store: Store) -> None:
    assert await store.kv_get("ns", "k") is None
    await store.kv_set("ns", "k", "1")
    await store.kv_set("ns", "k", "2")
    assert await store.kv_get("ns", "k") == "2"
    assert await store.kv_get("other", "k") is None
    await store.kv_delete("ns", "k")
    assert await store.kv_get("ns", "k") is None
    assert await store.kv_lease("ns", "poll", "a", 10, 100)
    assert not await store.kv_lease("ns", "poll", "b", 10, 105)
    assert await store.kv_lease("ns", "poll", "a", 10, 105)  # renew
    assert await store.kv_lease("ns", "poll", "b", 10, 116)  # expired


async def test_data_survives_reopen(backend: BackendFactory, tmp_path: Path) -> None:
    s1 = backend(tmp_path)
    await s1.open()
    out = await ingest(s1, inbound("1"))
    await s1.close()
    s2 = backend(tmp_path)
    await s2.open()  # migrations are idempotent
    assert [m.id for m in await s2.messages(out.conversation.id)] == [out.message.id]
    await s2.close()


async def test_edits_update_the_message_and_redelivery_is_a_duplicate(store: Store) -> None:
    first = await ingest(store, inbound("chat:1", text="helo"))
    edit = await ingest(store, inbound("chat:1:edit:1", text="hello", edits="chat:1"), now=1001)
    assert [e.type for e in edit.events] == ["message.edited"]
    again = await ingest(store, inbound("chat:1:edit:1", text="hello", edits="chat:1"), now=1002)
    assert again.duplicate and again.message.id == first.message.id
    assert [m.text for m in await store.messages(first.conversation.id)] == ["hello"]


async def test_concurrent_ingests_share_commits_but_fail_alone(store: Store) -> None:
    def broken(attrs: dict[str, str]) -> Classification:
        raise ValueError("classifier exploded")

    requests = [
        IngestRequest(
            "mail", "email", inbound(f"g{i}", f"g{i}@example.com"), classify_to(), 1000.0, WEEK
        )  # type: ignore[arg-type]
        for i in range(30)
    ]
    requests[7].classify = broken
    results = await asyncio.gather(*(store.ingest(r) for r in requests), return_exceptions=True)
    assert isinstance(results[7], ValueError)
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 29 and len({r.conversation.id for r in stored}) == 29
    # Nothing of the failed one is left behind: not its contact, not its message.
    with pytest.raises(NotFound):
        await store.find_contact(Identity("email", "g7@example.com"))


async def test_load_counters_match_a_recount(store: Store) -> None:
    """Capacity checks read kept counters; after any lifecycle they equal a recount."""
    await store.set_presence("bob", "online", 1)
    ids = [
        (await ingest(store, inbound(str(i), f"l{i}@example.com"))).conversation.id
        for i in range(6)
    ]
    await store.claim([Claim(c, "alice", "email", 9, "general", "rr", []) for c in ids[:3]], 10)
    await store.assign(ids[3], "bob", None, "admin", 11)
    await store.add_outbound(
        OutboundRequest(ids[0], "hi", "agent", "alice", 12)
    )  # assigned → pending
    await ingest(store, inbound("again-0", "l0@example.com"), now=13)  # pending → assigned
    await store.transfer(ids[1], "billing", "admin", None, 14)
    await store.resolve(ids[2], "admin", None, 15)
    await store.assign(ids[0], "bob", None, "admin", 16)  # moves from alice to bob
    await store.reopen(ids[2], "admin", 17)
    recount: dict[tuple[str, str], int] = {}
    for status in ("assigned", "pending"):
        rows, _ = await store.list_conversations(ConversationFilter(status=status, limit=100))
        for c in rows:
            recount[(c.assignee or "", c.channel_kind)] = (
                recount.get((c.assignee or "", c.channel_kind), 0) + 1
            )
    snap = await store.routing_snapshot()
    assert snap.loads == recount == {("bob", "email"): 2}


async def test_queued_reply_keeps_its_channel_and_recipient(store: Store) -> None:
    """A reply goes where the customer was when it was written, even if they switch channels."""
    dana = Identity("email", "dana@example.com")
    conv = (await ingest(store, inbound("1", "dana@example.com"), channel="mail")).conversation
    await store.add_outbound(OutboundRequest(conv.id, "answer", "agent", "alice", 1100))
    visitor = Identity("webchat", "v-9")
    chat = await ingest(
        store,
        InboundMessage("chat-1", visitor, "hi from chat", extra_identities=[dana]),
        now=1150,
        channel="chat",
    )
    assert chat.conversation.id != conv.id  # a typed address is only a claim
    await store.link_verified(visitor, dana, 1160)  # ... until it is proven
    await store.resolve(chat.conversation.id, "admin", None, 1170)
    switched = await ingest(
        store, InboundMessage("chat-2", visitor, "it's me"), now=1200, channel="chat"
    )
    assert switched.conversation.id == conv.id
    [item] = await store.outbox_lease(1300, 10, 30)
    assert (item.channel, item.to) == ("mail", dana)


async def test_a_typed_address_is_a_claim_until_proven_and_a_merge_can_be_undone(
    store: Store,
) -> None:
    dana = Identity("email", "dana@example.com")
    theirs = await ingest(store, inbound("1", "dana@example.com"))
    visitor = Identity("webchat", "v-1")
    claimed = await ingest(
        store, InboundMessage("c1", visitor, "it's me", extra_identities=[dana]), now=1100
    )
    assert claimed.contact_id != theirs.contact_id
    assert claimed.conversation.id != theirs.conversation.id
    mine = await store.find_contact(visitor)
    assert mine.identities == [("webchat", "v-1", True)] and mine.claims == [
        ("email", dana.address)
    ]
    assert (await store.find_contact(dana)).claims == []

    into, events = await store.link_verified(visitor, dana, 1200)
    assert into == theirs.contact_id
    assert [e.type for e in events] == ["contact.merged"]
    assert events[0].data["merged_contact_id"] == claimed.contact_id
    merged = await store.find_contact(visitor)
    assert merged.id == theirs.contact_id and merged.claims == []
    assert set(merged.identities) == {("email", dana.address, True), ("webchat", "v-1", True)}
    rows, _ = await store.list_conversations(ConversationFilter(contact_id=theirs.contact_id))
    assert {c.id for c in rows} == {theirs.conversation.id, claimed.conversation.id}

    back, events = await store.unmerge(claimed.contact_id, 1300)
    assert back == theirs.contact_id and [e.type for e in events] == ["contact.unmerged"]
    alone = await store.find_contact(visitor)
    assert alone.id == claimed.contact_id and alone.claims == [("email", dana.address)]
    rows, _ = await store.list_conversations(ConversationFilter(contact_id=theirs.contact_id))
    assert [c.id for c in rows] == [theirs.conversation.id]
    with pytest.raises(Conflict):
        await store.unmerge(claimed.contact_id, 1400)

    # An address nobody holds becomes the claimant's own once proven.
    other = Identity("webchat", "v-2")
    await ingest(
        store,
        InboundMessage("c2", other, "hi", extra_identities=[Identity("email", "new@example.com")]),
        now=1500,
    )
    owner, events = await store.link_verified(other, Identity("email", "new@example.com"), 1600)
    assert [e.type for e in events] == ["contact.verified"]
    assert (await store.find_contact(Identity("email", "new@example.com"))).id == owner


async def test_old_thread_reply_joins_the_active_conversation(store: Store) -> None:
    old = await ingest(store, inbound("1", provider_message_id="<old@x>"))
    await store.resolve(old.conversation.id, "admin", None, 1100)
    current = await ingest(store, inbound("2"), now=1100 + WEEK + 10)
    assert current.created
    late = await ingest(store, inbound("3", thread_refs=["<old@x>"]), now=1100 + WEEK + 20)
    assert late.conversation.id == current.conversation.id and not late.created


async def test_replies_of_one_conversation_leave_in_order(store: Store) -> None:
    conv = (await ingest(store, inbound("1"))).conversation
    first, _ = await store.add_outbound(
        OutboundRequest(conv.id, "one moment", "agent", "alice", 1100)
    )
    second, _ = await store.add_outbound(
        OutboundRequest(conv.id, "here it is", "agent", "alice", 1101)
    )
    assert [i.message_id for i in await store.outbox_lease(1200, 10, 30)] == [first.id]
    await store.outbox_record(first.id, DeliveryResult.retry("busy"), 1300, 1201)
    assert await store.outbox_lease(1250, 10, 30) == []  # the second waits for the first
    assert [i.message_id for i in await store.outbox_lease(1300, 10, 30)] == [first.id]
    await store.outbox_record(first.id, DeliveryResult.sent("p1"), None, 1301)
    assert [i.message_id for i in await store.outbox_lease(1302, 10, 30)] == [second.id]


async def test_a_message_sent_on_the_side_does_not_hold_up_the_replies(store: Store) -> None:
    """A verification code mailed to a chat visitor's claimed address, stuck on a failing
    mail server, must not keep the agent's chat replies waiting."""
    conv = (await ingest(store, inbound("1"), channel="chat")).conversation
    code, _ = await store.add_outbound(
        OutboundRequest(
            conv.id,
            "code",
            "bot",
            None,
            1100,
            channel="mail",
            to=Identity("email", "claimed@example.com"),
            metadata={"verification": {}},
        )
    )
    reply, _ = await store.add_outbound(OutboundRequest(conv.id, "hi", "agent", "alice", 1101))
    leased = {i.message_id: i for i in await store.outbox_lease(1200, 10, 30)}
    assert set(leased) == {code.id, reply.id}
    assert (leased[code.id].channel, leased[code.id].to) == (
        "mail",
        Identity("email", "claimed@example.com"),
    )
    assert (leased[reply.id].channel, leased[reply.id].to) == (
        "chat",
        Identity("email", "a@example.com"),
    )
    assert code.to_api()["text"] != "code"  # shown redacted


async def test_a_receipt_faster_than_the_send_record_is_kept(store: Store) -> None:
    """A provider's status callback can beat our own bookkeeping of the send."""
    conv = (await ingest(store, inbound("1"))).conversation
    msg, _ = await store.add_outbound(OutboundRequest(conv.id, "hi", "agent", "alice", 1100))
    await store.outbox_lease(1100, 10, 30)
    assert await store.apply_receipt("mail", "prov-early", "delivered", None, 1101) == []
    events = await store.outbox_record(msg.id, DeliveryResult.sent("prov-early"), None, 1102)
    assert [e.type for e in events] == ["message.sent", "message.delivered"]
    [stored] = [m for m in await store.messages(conv.id) if m.id == msg.id]
    assert stored.status == "delivered"


async def test_quarantine_keeps_items_until_someone_acts(store: Store) -> None:
    first, events = await store.quarantine_add(
        "mail", "message/rfc822", b"raw\x00bytes", "unreadable", 10.0, "<m@x>", {"uid": 7}
    )
    assert [e.type for e in events] == ["message.quarantined"]
    assert events[0].data["quarantine"]["id"] == first.id
    second, _ = await store.quarantine_add("sms", "application/json", b"{}", "refused", 11.0)
    assert await store.quarantine_unreviewed() == {"mail": 1, "sms": 1}

    item, data = await store.quarantine_get(first.id)
    assert data == b"raw\x00bytes" and item.size == 9 and item.metadata == {"uid": 7}
    page, cursor = await store.quarantine_list(limit=1)
    assert [i.id for i in page] == [second.id] and cursor is not None  # newest first
    page, cursor = await store.quarantine_list(limit=1, cursor=cursor)
    assert [i.id for i in page] == [first.id] and cursor is None
    assert [i.id for i in (await store.quarantine_list(channel="sms"))[0]] == [second.id]

    failed, events = await store.quarantine_settle(first.id, "new", 12.0, reason="still bad")
    assert (failed.status, failed.reason, failed.retries) == ("new", "still bad", 1)
    assert [e.type for e in events] == ["quarantine.retry_failed"]
    done, _ = await store.quarantine_settle(first.id, "retried", 13.0, message_id="msg_1")
    assert (done.status, done.message_id, done.retries) == ("retried", "msg_1", 2)
    await store.quarantine_settle(second.id, "dismissed", 14.0)
    assert await store.quarantine_unreviewed() == {}
    assert (await store.quarantine_list(status="new"))[0] == []
    with pytest.raises(NotFound):
        await store.quarantine_get("q_missing")


async def test_scope_hides_and_guards_inside_each_operation(store: Store) -> None:
    """An agent's scope is checked by the operation itself: what it does not see is
    NotFound (its existence not revealed), what is someone else's is Forbidden."""
    general = (await ingest(store, inbound("g1", sender="g@example.com"))).conversation
    billing = (
        await store.ingest(
            IngestRequest(
                "mail",
                "email",
                inbound("b1", sender="b@example.com"),
                classify_to(),  # type: ignore[arg-type]
                1000.0,
                WEEK,
                blobs={"b_raw": ("message/rfc822", b"raw!")},
                raw_blob="b_raw",
            )
        )
    ).conversation
    await store.transfer(billing.id, "billing", "admin", None, 1001)
    bob = Scope(agent="bob", queues=frozenset({"general"}))
    rows, _ = await store.list_conversations(ConversationFilter(scope=bob))
    assert [c.id for c in rows] == [general.id]
    for op in (
        store.get_conversation(billing.id, bob),
        store.messages(billing.id, bob),
        store.resolve(billing.id, "bob", bob, 1002),
        store.reopen(billing.id, "bob", 1002, bob),
        store.transfer(billing.id, "general", "bob", bob, 1002),
        store.assign(billing.id, "bob", None, "bob", 1002, bob),
        store.get_contact(billing.contact_id, bob),
        store.find_contact(Identity("email", "b@example.com"), bob),
    ):
        with pytest.raises(NotFound):
            await op
    [msg] = await store.messages(billing.id)
    assert msg.raw_blob is not None
    with pytest.raises(NotFound):
        await store.get_blob(msg.raw_blob, bob)
    assert (await store.get_blob(msg.raw_blob))[1] == b"raw!"

    # Assigned to bob, a billing conversation becomes his to see; alice's stays hers.
    await store.assign(billing.id, "bob", None, "admin", 1003)
    assert (await store.get_conversation(billing.id, bob)).assignee == "bob"
    assert (await store.get_blob(msg.raw_blob, bob))[1] == b"raw!"
    await store.assign(general.id, "alice", None, "admin", 1004)
    with pytest.raises(Forbidden):
        await store.add_outbound(OutboundRequest(general.id, "hi", "agent", "bob", 1005, scope=bob))
    only_mine = Scope(agent="bob", queues=frozenset())
    rows, _ = await store.list_conversations(ConversationFilter(scope=only_mine))
    assert [c.id for c in rows] == [billing.id]


# --- two instances on one database -------------------------------------------------------


async def test_two_instances_ingesting_for_one_contact_make_one_conversation(
    pair: tuple[Store, Store],
) -> None:
    """Messages of one new customer arrive at both instances at once: one contact, one
    conversation, every message in it, each stored once."""
    one, two = pair
    results = await asyncio.gather(
        *(ingest((one, two)[i % 2], inbound(f"m{i}", "zoe@example.com")) for i in range(20))
    )
    assert len({r.contact_id for r in results}) == 1
    assert len({r.conversation.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    messages = await two.messages(results[0].conversation.id)
    assert sorted(m.external_id for m in messages) == sorted(f"m{i}" for i in range(20))
    # The same message delivered to both instances is stored once.
    again = await asyncio.gather(
        ingest(one, inbound("dup", "zoe@example.com")),
        ingest(two, inbound("dup", "zoe@example.com")),
    )
    assert sorted(r.duplicate for r in again) == [False, True]
    assert again[0].message.id == again[1].message.id


async def test_two_instances_claiming_one_conversation_assign_it_once(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    await two.set_presence("bob", "online", 900)
    conv = (await ingest(one, inbound("1", "w@example.com"))).conversation.id
    # Both instances' routers chose it at once: alice on one, bob on the other.
    outcomes = await asyncio.gather(
        *(
            (one, two)[n % 2].claim(
                [Claim(conv, ("alice", "bob")[n % 2], "email", 2, "general", "rr", [])], 2000
            )
            for n in range(6)
        )
    )
    assert sum(len(ids) for ids, _ in outcomes) == 1
    [event] = [e for _, evs in outcomes for e in evs]
    assigned = await two.get_conversation(conv)
    assert assigned.status == "assigned" and assigned.assignee == event.data["agent"]
    loads = (await one.routing_snapshot()).loads
    assert loads == {(event.data["agent"], "email"): 1}


async def test_two_instances_claiming_for_one_agent_stay_within_her_capacity(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    convs = [
        (await ingest(one, inbound(str(i), f"k{i}@example.com"), now=1000 + i)).conversation.id
        for i in range(6)
    ]
    # Each instance planned every conversation for alice (capacity 2), against its snapshot.
    outcomes = await asyncio.gather(
        *(
            store.claim([Claim(c, "alice", "email", 2, "general", "rr", [])], 2000)
            for c in convs
            for store in (one, two)
        )
    )
    claimed = [cid for ids, _ in outcomes for cid in ids]
    assert len(claimed) == 2 and len(set(claimed)) == 2
    assert (await two.routing_snapshot()).loads == {("alice", "email"): 2}


async def test_an_outbox_item_leased_by_one_instance_is_not_leased_by_the_other(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    conv = (await ingest(one, inbound("1"))).conversation
    sent = [
        (await two.add_outbound(OutboundRequest(conv.id, f"r{i}", "agent", "alice", 1100 + i)))[
            0
        ].id
        for i in range(3)
    ]
    leases = await asyncio.gather(one.outbox_lease(1200, 10, 30), two.outbox_lease(1200, 10, 30))
    taken = [i.message_id for items in leases for i in items]
    # The first reply is leased by exactly one instance (the others wait behind it).
    assert taken == [sent[0]]
    assert await one.outbox_lease(1201, 10, 30) == []
    assert await two.outbox_lease(1201, 10, 30) == []
    # The holder records the send; the next reply is free for either instance.
    holder = one if leases[0] else two
    await holder.outbox_record(sent[0], DeliveryResult.sent("p-0"), None, 1202)
    [nxt] = await (two if holder is one else one).outbox_lease(1203, 10, 30)
    assert nxt.message_id == sent[1]


async def test_two_instances_setting_a_default_at_once_keep_one_value(
    pair: tuple[Store, Store],
) -> None:
    """A secret made by each instance at first start: whichever is stored first is the one
    every caller gets back, and a later call never replaces it."""
    a, b = pair
    for round_ in range(10):
        key = f"secret{round_}"
        kept = await asyncio.gather(
            *(
                s.kv_setdefault("ns", key, f"{name}{i}")
                for i in range(3)
                for name, s in [("a", a), ("b", b)]
            )
        )
        assert len(set(kept)) == 1, kept
        assert await a.kv_get("ns", key) == kept[0] == await b.kv_get("ns", key)
        assert await b.kv_setdefault("ns", key, "later") == kept[0]


async def test_two_instances_write_one_event_log_in_commit_order(
    pair: tuple[Store, Store],
) -> None:
    one, two = pair
    start = await one.last_event_id()
    await asyncio.gather(
        *(ingest((one, two)[i % 2], inbound(f"e{i}", f"e{i}@example.com")) for i in range(10))
    )
    events = await one.events_since(start, 1000)
    assert [e.id for e in events] == list(range(start + 1, start + 1 + len(events)))
    assert [e.id for e in await two.events_since(start, 1000)] == [e.id for e in events]
    assert sum(e.type == "conversation.created" for e in events) == 10


async def test_a_nul_the_store_cannot_keep_is_unstorable_not_a_driver_error(store: Store) -> None:
    """SQLite keeps U+0000; PostgreSQL cannot compare or store it in text. Either way the
    caller sees a store error (the API answers 400), never the driver's exception (a 500)."""
    with pytest.raises((NotFound, Unstorable)):
        await store.find_contact(Identity("api", "a\x00b"))
    with pytest.raises((NotFound, Unstorable)):
        await store.get_conversation("cv_\x00")
