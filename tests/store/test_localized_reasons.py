"""Routing reasons per language on every backend: the conversation keeps its
classification's reasons in English and German, and each `conversation.assigned` (by the
router, by an accepted offer, by hand) carries its reasons in both."""

from __future__ import annotations

from gateway.model import Conversation
from gateway.store import Store
from gateway.store.base import Claim, Classification, EscalationStore, IngestRequest
from router.reasons import Reason, join
from tests.store.test_contract import (  # noqa: F401 (fixtures)
    WEEK,
    backend,
    inbound,
    store,
)

MATCHED = Reason(
    "rule.matched",
    rule="'billing'",
    why=Reason("cond.text", parts=join("and", [Reason("cond.contains", value="'rechnung'")])),
)
CHOSEN = Reason("agent.chosen", agent="alice", strategy="round_robin", load=0, capacity=2)


async def _routed(store: Store, ext: str) -> Conversation:  # noqa: F811
    cls = Classification("general", 1, {}, [], "billing", [MATCHED], ["billing"])
    outcome = await store.ingest(
        IngestRequest("mail", "email", inbound(ext), lambda attrs: cls, 1000.0, WEEK)
    )
    return outcome.conversation  # type: ignore[no-any-return]


async def test_a_conversation_keeps_its_reasons_in_english_and_german(store: Store) -> None:  # noqa: F811
    conv = await _routed(store, "r1")
    stored = await store.get_conversation(conv.id)
    routing = stored.to_api()["routing"]
    assert routing["reasons"] == ["rule 'billing' matched: text contains 'rechnung'"]
    assert routing["reasons_localized"] == {
        "en": ["rule 'billing' matched: text contains 'rechnung'"],
        "de": ["Regel 'billing' trifft zu: Text enthält 'rechnung'"],
    }
    done, events = await store.claim(
        [Claim(conv.id, "alice", "email", 2, "general", "round_robin", [CHOSEN])], 1001.0
    )
    assert done == [conv.id]
    [assigned] = [e for e in events if e.type == "conversation.assigned"]
    assert assigned.data["reasons"] == [
        "rule 'billing' matched: text contains 'rechnung'",
        "alice chosen by round_robin; load 0/2",
    ]
    assert assigned.data["reasons_localized"]["de"] == [
        "Regel 'billing' trifft zu: Text enthält 'rechnung'",
        "alice gewählt nach round_robin; Auslastung 0/2",
    ]
    _, events = await store.assign(conv.id, "bob", None, "carol", 1002.0)
    [manual] = [e for e in events if e.type == "conversation.assigned"]
    assert manual.data["reasons"] == ["assigned manually by carol"]
    assert manual.data["reasons_localized"]["de"] == ["manuell zugewiesen von carol"]


async def test_an_accepted_offer_gives_its_reasons_in_german(store: Store) -> None:  # noqa: F811
    assert isinstance(store, EscalationStore)
    conv = await _routed(store, "o1")
    claim = Claim(conv.id, "alice", "email", 2, "general", "round_robin", [CHOSEN])
    made, events = await store.offer_create([(claim, 1060.0)], 1000.0)
    assert made == [conv.id]
    assert events[0].data["reasons_localized"]["de"] == [
        "alice gewählt nach round_robin; Auslastung 0/2"
    ]
    _, events = await store.offer_answer(conv.id, "alice", True, 1010.0, None)
    [assigned] = [e for e in events if e.type == "conversation.assigned"]
    assert assigned.data["reasons"][-2:] == [
        "alice chosen by round_robin; load 0/2",
        "offer accepted by alice",
    ]
    assert assigned.data["reasons_localized"]["de"] == [
        "Regel 'billing' trifft zu: Text enthält 'rechnung'",
        "alice gewählt nach round_robin; Auslastung 0/2",
        "Angebot angenommen von alice",
    ]


def test_routing_stored_before_serves_english_only() -> None:
    old = Conversation(
        id="cv_old",
        contact_id="ct_1",
        channel="mail",
        channel_kind="email",
        last_channel="mail",
        status="open",
        queue="general",
        priority=1,
        created_at=1.0,
        updated_at=1.0,
        routing={"rule": None, "reasons": ["no rule matched; default queue 'general'"]},
    )
    assert old.to_api()["routing"]["reasons_localized"] == {
        "en": ["no rule matched; default queue 'general'"]
    }
