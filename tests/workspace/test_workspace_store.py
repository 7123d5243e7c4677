"""The store's workspace role on every backend (tests/store/test_contract.py `BACKENDS`):
notes, canned replies, merging contacts by hand, undoing it, splitting an identity off."""

from __future__ import annotations

import pytest

from connectors.base import Identity
from gateway.store import Conflict, NotFound, Store
from gateway.store.base import Scope
from gateway.store.workspace import CannedReply, workspace_store
from tests.store.test_contract import (  # noqa: F401 - fixtures for these tests
    backend,
    inbound,
    ingest,
    store,
)


async def test_notes_are_kept_apart_from_messages(store: Store) -> None:  # noqa: F811
    ws = workspace_store(store)
    a = await ingest(store, inbound("1"))
    conv = a.conversation.id  # type: ignore[attr-defined]
    note, events = await ws.note_add(conv, "agent", "alice", "hm @bob", ["bob"], 1100.0)
    assert [e.type for e in events] == ["message.created", "agent.mentioned"]
    assert events[0].data["private"] is True and events[0].data["note"]["text"] == "hm @bob"
    assert events[1].data == {
        "agent": "bob",
        "conversation_id": conv,
        "message_id": note.id,
        "by": "alice",
    }
    assert [n.id for n in await ws.notes(conv)] == [note.id]
    assert [m.text for m in await store.messages(conv)] == ["hello"]  # not a message
    assert await store.outbox_lease(2000.0, 10, 30) == []  # nothing to send
    # A scope that does not see the conversation sees no notes and adds none.
    blind = Scope(agent="carol", queues=frozenset())
    with pytest.raises(NotFound):
        await ws.notes(conv, blind)
    with pytest.raises(NotFound):
        await ws.note_add(conv, "agent", "carol", "x", [], 1200.0, blind)


async def test_canned_replies_unique_per_owner(store: Store) -> None:  # noqa: F811
    ws = workspace_store(store)
    team = CannedReply("cr_1", "hi", "Hi", {"en": "Hi"}, "team", ["general"])
    saved = await ws.canned_put(team, 10.0)
    assert saved.created_at == 10.0
    mine = CannedReply("cr_2", "hi", "Mine", {"de": "Hallo"}, "personal", agent="alice")
    await ws.canned_put(mine, 11.0)  # another owner: the shortcut is free
    with pytest.raises(Conflict):
        await ws.canned_put(CannedReply("cr_3", "hi", "Again", {"en": "x"}, "team"), 12.0)
    team.title = "Hello"
    again = await ws.canned_put(team, 13.0)
    assert (again.created_at, again.updated_at) == (10.0, 13.0)
    got = await ws.canned_get("cr_1")
    assert got.title == "Hello" and got.queues == ["general"] and got.texts == {"en": "Hi"}
    assert [r.id for r in await ws.canned_list()] == ["cr_1", "cr_2"]
    await ws.canned_delete("cr_2")
    with pytest.raises(NotFound):
        await ws.canned_delete("cr_2")
    with pytest.raises(NotFound):
        await ws.canned_get("cr_2")


async def test_merge_by_hand_then_undo(store: Store) -> None:  # noqa: F811
    ws = workspace_store(store)
    a = await ingest(store, inbound("1", "ann@example.com"))
    b = await ingest(store, inbound("2", "bea@example.com"), now=1001)
    ann, bea = a.contact_id, b.contact_id  # type: ignore[attr-defined]
    merge, events = await ws.contact_merge(ann, bea, "alice", 1100.0)
    [event] = events
    assert event.type == "contact.merged"
    assert event.data["merged_contact_id"] == bea and event.data["by"] == "alice"
    assert event.data["conversations"] == [b.conversation.id]  # type: ignore[attr-defined]
    assert event.data["identities"] == [
        {"kind": "email", "address": "bea@example.com", "verified": True}
    ]
    # One contact now: both identities, both conversations; bea's address finds ann.
    found = await store.find_contact(Identity("email", "bea@example.com"))
    assert found.id == ann
    assert {i[1] for i in found.identities} == {"ann@example.com", "bea@example.com"}
    convs = await ws.contact_conversations(ann)
    assert {c.id for c in convs} == {a.conversation.id, b.conversation.id}  # type: ignore[attr-defined]
    [listed] = await ws.contact_merges(ann)
    assert listed.id == merge.id and listed.by == "alice" and listed.undone_at is None
    with pytest.raises(Conflict):
        await ws.contact_merge(ann, bea, "alice", 1150.0)  # merged already
    with pytest.raises(Conflict):
        await ws.contact_merge(ann, ann, "alice", 1150.0)
    with pytest.raises(Conflict):
        await ws.contact_merge(bea, ann, "alice", 1150.0)  # into a merged contact

    undone, events = await ws.contact_merge_undo(ann, merge.id, 1200.0)
    assert [e.type for e in events] == ["contact.unmerged"] and undone.undone_at == 1200.0
    back = await store.find_contact(Identity("email", "bea@example.com"))
    assert back.id == bea and back.merged_into is None and back.claims == []
    assert [c.id for c in await ws.contact_conversations(bea)] == [b.conversation.id]  # type: ignore[attr-defined]
    assert [c.id for c in await ws.contact_conversations(ann)] == [a.conversation.id]  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await ws.contact_merge_undo(ann, merge.id, 1300.0)
    with pytest.raises(NotFound):
        await ws.contact_merge_undo(bea, merge.id, 1300.0)  # not a merge into bea


async def test_split_an_identity_off_with_its_conversations(store: Store) -> None:  # noqa: F811
    ws = workspace_store(store)
    a = await ingest(store, inbound("1", "ann@example.com"))
    ann = a.contact_id  # type: ignore[attr-defined]
    # ann proves a second address, and later writes from it (a conversation of its own).
    await store.link_verified(
        Identity("email", "ann@example.com"), Identity("email", "work@example.com"), 1050.0
    )
    await store.resolve(a.conversation.id, "admin", None, 1060.0)  # type: ignore[attr-defined]
    w = await ingest(store, inbound("2", "work@example.com"), now=1060.0 + 8 * 86400)
    assert w.contact_id == ann and w.created  # type: ignore[attr-defined]

    split, events = await ws.contact_split(ann, Identity("email", "work@example.com"), 2e6)
    assert [e.type for e in events] == ["contact.split"]
    assert split.conversations == [w.conversation.id]  # type: ignore[attr-defined]
    new = await store.find_contact(Identity("email", "work@example.com"))
    assert new.id == split.contact_id != ann
    assert [c.id for c in await ws.contact_conversations(new.id)] == [w.conversation.id]  # type: ignore[attr-defined]
    old = await store.get_contact(ann)
    assert [i[1] for i in old.identities] == ["ann@example.com"]
    # The new contact's next message joins its own active conversation.
    more = await ingest(store, inbound("3", "work@example.com"), now=2e6 + 1)
    assert more.conversation.id == w.conversation.id  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        await ws.contact_split(ann, Identity("email", "ann@example.com"), 2e6 + 2)
    with pytest.raises(NotFound):
        await ws.contact_split(ann, Identity("email", "nobody@example.com"), 2e6 + 2)


async def test_rename(store: Store) -> None:  # noqa: F811
    ws = workspace_store(store)
    a = await ingest(store, inbound("1"))
    contact, events = await ws.contact_rename(a.contact_id, "Dana Fox", 1100.0)  # type: ignore[attr-defined]
    assert contact.name == "Dana Fox" and [e.type for e in events] == ["contact.updated"]
    assert (await ws.contact_rename(a.contact_id, "Dana Fox", 1200.0))[1] == []  # type: ignore[attr-defined]
