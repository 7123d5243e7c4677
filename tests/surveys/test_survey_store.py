"""The store's part of the surveys on every backend (`BACKENDS`: SQLite and the session's
private PostgreSQL): a resolution is decided once even when two instances decide it at the
same moment, the first score counts, an opt-out wins over a question decided before it, and
the list pages newest first."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from connectors.base import Identity
from gateway.ids import new_id
from gateway.store import SqliteStore, Store
from gateway.store.base import (
    OutboundRequest,
    SurveyMatch,
    SurveyResponse,
    SurveySend,
    SurveyStore,
)
from gateway.store.postgres import PostgresStore
from gateway.store.postgres.from_sqlite import migrate_from_sqlite
from tests.store.test_contract import backend, inbound, ingest, pair, store

__all__ = ["backend", "pair", "store"]

WINDOW = 30 * 86400.0
SURVEY_TABLES = ("survey_responses", "survey_decisions", "survey_optouts")


def surveys(s: Store) -> SurveyStore:
    assert isinstance(s, SurveyStore)
    return s


async def resolved(s: Store, sender: str, ext: str, at: float) -> tuple[str, float]:
    """A conversation of `sender`, resolved at `at`: its id and resolution time."""
    out = await ingest(s, inbound(ext, sender), now=at - 100)
    conv_id = out.conversation.id  # type: ignore[attr-defined]
    await s.resolve(conv_id, "admin", None, at)
    return conv_id, at


def question(s: Store, conv_id: str, contact_id: str, resolved_at: float, now: float) -> SurveySend:
    response = SurveyResponse(
        id=new_id("sv"),
        conversation_id=conv_id,
        contact_id=contact_id,
        channel="mail",
        kind="csat",
        score=None,
        comment=None,
        agent_id=None,
        queue="general",
        sent_at=now,
        answered_at=None,
        language="en",
        resolved_at=resolved_at,
    )
    message = OutboundRequest(conv_id, "How satisfied were you?", "bot", None, now, automatic=True)
    return SurveySend(response, message)


async def test_two_instances_deciding_one_resolution_send_one_question(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    conv_id, at = await resolved(a, "dana@example.com", "m1", 2000.0)
    [facts] = await surveys(a).survey_due(5000.0, 60.0, 0.0, None, WINDOW, 10)
    contact_id = facts.conversation.contact_id
    sends = [question(s, conv_id, contact_id, at, 5000.0) for s in (a, b)]
    results = await asyncio.gather(
        surveys(a).survey_decide(conv_id, at, "sent", sends[0], 5000.0),
        surveys(b).survey_decide(conv_id, at, "sent", sends[1], 5000.0),
    )
    sent = [r for r, _ in results if r is not None]
    assert len(sent) == 1
    [events] = [ev for r, ev in results if r is not None]
    assert [e.type for e in events] == ["message.queued", "survey.sent"]
    assert [ev for r, ev in results if r is None] == [[]]
    page, cursor = await surveys(b).survey_list(conversation_id=conv_id)
    assert [r.id for r in page] == [sent[0].id] and cursor is None
    questions = [m for m in await b.messages(conv_id) if m.direction == "out"]
    assert [(m.text, m.automated, m.id) for m in questions] == [
        ("How satisfied were you?", True, sent[0].message_id)
    ]
    # Decided: no longer due, on either instance.
    assert await surveys(b).survey_due(6000.0, 60.0, 0.0, None, WINDOW, 10) == []
    assert await surveys(a).survey_next_due(60.0, 0.0, None) is None


async def test_a_reopened_conversation_is_not_asked(store: Store) -> None:
    conv_id, at = await resolved(store, "eve@example.com", "m1", 2000.0)
    await ingest(store, inbound("m2", "eve@example.com"), now=2500.0)  # reopens it
    assert await surveys(store).survey_due(5000.0, 60.0, 0.0, None, WINDOW, 10) == []
    send = question(store, conv_id, "whoever", at, 5000.0)
    assert await surveys(store).survey_decide(conv_id, at, "sent", send, 5000.0) == (None, [])
    assert [m.direction for m in await store.messages(conv_id)] == ["in", "in"]


async def test_due_resolutions_come_oldest_first_with_the_facts_of_their_contact(
    store: Store,
) -> None:
    first, at1 = await resolved(store, "ann@example.com", "a1", 2000.0)
    second, at2 = await resolved(store, "bob@example.com", "b1", 3000.0)
    s = surveys(store)
    assert await s.survey_next_due(60.0, 0.0, None) == at1 + 60.0
    assert await s.survey_next_due(60.0, 2500.0, None) == at2 + 60.0  # the horizon
    assert await s.survey_next_due(60.0, 0.0, {"billing"}) is None
    assert await s.survey_next_due(60.0, 0.0, set()) is None
    due = await s.survey_due(2100.0, 60.0, 0.0, {"general"}, WINDOW, 10)
    assert [f.conversation.id for f in due] == [first]  # the second is not due yet
    due = await s.survey_due(4000.0, 60.0, 0.0, None, WINDOW, 10)
    assert [f.conversation.id for f in due] == [first, second]
    ann = due[0]
    assert (ann.opted_out, ann.automated, ann.bounced) == (False, False, False)
    assert (ann.last_sent, ann.recent_surveys, ann.recent_automatic) == ({}, 0, 0)
    contact, events = await s.contact_set_attributes(
        ann.conversation.contact_id, {"language": "de", "tier": "gold"}, 4000.0
    )
    assert contact.attributes == {"language": "de", "tier": "gold"}
    assert [e.type for e in events] == ["contact.updated"]
    contact, events = await s.contact_set_attributes(contact.id, {"tier": None}, 4001.0)
    assert contact.attributes == {"language": "de"} and len(events) == 1
    assert (await s.contact_set_attributes(contact.id, {"tier": None}, 4002.0))[1] == []
    sent, _ = await s.survey_decide(
        first, at1, "sent", question(store, first, contact.id, at1, 4000.0), 4000.0
    )
    assert sent is not None
    # The contact writes again (the conversation reopens) and is resolved again: a new
    # resolution, due again, with the question just asked in its facts.
    await ingest(store, inbound("a2", "ann@example.com"), now=4500.0)
    await store.resolve(first, "admin", None, 5000.0)
    again = await s.survey_due(9000.0, 60.0, 0.0, None, WINDOW, 10)
    assert [f.conversation.id for f in again] == [second, first]
    facts = again[1]
    assert facts.conversation.resolved_at == 5000.0
    assert facts.contact_attributes == {"language": "de"}
    assert facts.last_sent == {"csat": 4000.0}
    assert (facts.recent_surveys, facts.recent_automatic) == (1, 1)
    assert (facts.opted_out, facts.automated, facts.bounced) == (False, False, False)
    # Outside the window, neither counts any more (the last one sent still does).
    later = await s.survey_due(4000.0 + WINDOW + 1, 60.0, 0.0, None, WINDOW, 10)
    assert [(f.recent_surveys, f.recent_automatic) for f in later][1] == (0, 0)


async def test_the_first_score_counts_and_a_comment_follows_it(pair: tuple[Store, Store]) -> None:
    a, b = pair
    conv_id, at = await resolved(a, "fay@example.com", "f1", 2000.0)
    [facts] = await surveys(a).survey_due(3000.0, 60.0, 0.0, None, WINDOW, 10)
    send = question(a, conv_id, facts.conversation.contact_id, at, 3000.0)
    sent, _ = await surveys(a).survey_decide(conv_id, at, "sent", send, 3000.0)
    assert sent is not None
    fay = Identity("email", "fay@example.com")
    assert await surveys(b).survey_open_for(fay, "mail", 2500.0) == sent
    assert await surveys(b).survey_open_for(fay, "mail", 3500.0) is None  # too old
    assert await surveys(b).survey_open_for(fay, "sms", 2500.0) is None  # another channel
    # A comment before any score is not taken.
    early, events = await surveys(b).survey_answer(sent.id, None, "meh", None, None, 3050.0)
    assert (early.comment, events) == (None, [])
    answers = await asyncio.gather(
        surveys(a).survey_answer(sent.id, 5, None, "mail", "r1", 3100.0),
        surveys(b).survey_answer(sent.id, 1, None, "mail", "r2", 3100.0),
    )
    assert sorted(len(ev) for _, ev in answers) == [0, 1]
    [(winner, [event])] = [(r, ev) for r, ev in answers if ev]
    assert event.type == "survey.answered" and event.data["survey"]["score"] == winner.score
    stored = await surveys(a).survey_get(sent.id)
    assert stored.score == winner.score and stored.answered_at == 3100.0
    taken_by = "r1" if winner.score == 5 else "r2"
    assert await surveys(b).survey_answered_by("mail", taken_by) == stored
    assert await surveys(b).survey_answered_by("mail", "nope") is None
    match = await surveys(a).survey_match(fay, "mail", taken_by, 2500.0)
    assert match == SurveyMatch(stored, None, None)  # a redelivery; answered: open no more
    # The next message within the comment window may be the comment.
    match = await surveys(b).survey_match(fay, "mail", "r3", 2500.0, comment_since=3050.0)
    assert match == SurveyMatch(None, None, stored)
    assert (
        await surveys(b).survey_match(fay, "mail", "r3", 2500.0, 3150.0)
    ).awaiting_comment is None
    assert (
        await surveys(b).survey_match(fay, "sms", "r3", 2500.0, 3050.0)
    ).awaiting_comment is None
    after, events = await surveys(b).survey_answer(sent.id, None, "Quick, thanks", None, None, 3200)
    assert after.comment == "Quick, thanks" and [e.type for e in events] == ["survey.answered"]
    same, events = await surveys(a).survey_answer(sent.id, None, "Quick, thanks", None, None, 3300)
    assert events == [] and same.score == winner.score
    match = await surveys(b).survey_match(fay, "mail", "r4", 2500.0, comment_since=3050.0)
    assert match == SurveyMatch(None, None, None)  # commented: nothing awaited


async def test_an_opt_out_wins_over_a_question_decided_before_it(store: Store) -> None:
    s = surveys(store)
    conv_id, at = await resolved(store, "gus@example.com", "g1", 2000.0)
    [facts] = await s.survey_due(3000.0, 60.0, 0.0, None, WINDOW, 10)
    contact_id = facts.conversation.contact_id
    assert await s.survey_opted_out(contact_id) is None
    changed, events = await s.survey_optout(contact_id, True, "sms", 2900.0)
    assert changed and [e.data for e in events] == [
        {"contact_id": contact_id, "opted_out": True, "via": "sms"}
    ]
    assert await s.survey_optout(contact_id, True, "api", 2950.0) == (False, [])
    assert await s.survey_opted_out(contact_id) == 2900.0
    send = question(store, conv_id, contact_id, at, 3000.0)
    assert await s.survey_decide(conv_id, at, "sent", send, 3000.0) == (None, [])
    assert await s.survey_list(contact_id=contact_id) == ([], None)
    assert [m.direction for m in await store.messages(conv_id)] == ["in"]
    assert await s.survey_due(3000.0, 60.0, 0.0, None, WINDOW, 10) == []  # decided
    changed, _ = await s.survey_optout(contact_id, False, "api", 3100.0)
    assert changed and await s.survey_opted_out(contact_id) is None


async def test_the_list_pages_newest_first(store: Store) -> None:
    s = surveys(store)
    ids: list[str] = []
    for i in range(5):
        conv_id, at = await resolved(store, f"p{i}@example.com", f"p{i}", 2000.0 + i)
        [facts] = await s.survey_due(3000.0, 60.0, 0.0, None, WINDOW, 1)
        send = question(store, conv_id, facts.conversation.contact_id, at, 3000.0 + i)
        sent, _ = await s.survey_decide(conv_id, at, "sent", send, 3000.0 + i)
        assert sent is not None
        ids.append(sent.id)
    page, cursor = await s.survey_list(limit=2)
    seen = [r.id for r in page]
    while cursor is not None:
        page, cursor = await s.survey_list(limit=2, cursor=cursor)
        seen += [r.id for r in page]
    assert seen == ids[::-1]
    assert [r.id for r in (await s.survey_list(kind="nps"))[0]] == []
    assert [r.id for r in (await s.survey_list(kind="csat", limit=10))[0]] == ids[::-1]


async def test_attributes_set_by_two_instances_at_once_are_both_kept(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    out = await ingest(a, inbound("h1", "hal@example.com"))
    contact_id = out.contact_id  # type: ignore[attr-defined]
    await asyncio.gather(
        *(
            surveys(x).contact_set_attributes(contact_id, {key: "yes"}, 2000.0)
            for x, key in ((a, "one"), (b, "two"), (a, "three"), (b, "four"))
        )
    )
    contact = await b.get_contact(contact_id)
    assert contact.attributes == {"one": "yes", "two": "yes", "three": "yes", "four": "yes"}


async def test_surveys_move_from_sqlite_to_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """`switchboard migrate` takes the surveys along: the list in its order, the answers,
    the decisions (nothing asked again) and the opt-outs."""
    source = SqliteStore(tmp_path / "old.db")
    await source.open()
    sent: list[SurveyResponse] = []
    for i in range(3):
        conv_id, at = await resolved(source, f"m{i}@example.com", f"m{i}", 2000.0 + i)
        [facts] = await source.survey_due(3000.0, 60.0, 0.0, None, WINDOW, 1)
        send = question(source, conv_id, facts.conversation.contact_id, at, 3000.0 + i)
        response, _ = await source.survey_decide(conv_id, at, "sent", send, 3000.0 + i)
        assert response is not None
        sent.append(response)
    await source.survey_answer(sent[0].id, 4, "Fine", "mail", "r-1", 3100.0)
    await source.survey_optout(sent[1].contact_id, True, "mail", 3200.0)
    before = await source.survey_list(limit=2)
    await source.close()

    summary = await asyncio.to_thread(
        migrate_from_sqlite, tmp_path / "old.db", pg_dsn, io.StringIO()
    )
    assert {t: summary[t] for t in SURVEY_TABLES} == {
        "survey_responses": (3, 3),
        "survey_decisions": (3, 3),
        "survey_optouts": (1, 1),
    }
    again = await asyncio.to_thread(migrate_from_sqlite, tmp_path / "old.db", pg_dsn, io.StringIO())
    assert {t: again[t][1] for t in SURVEY_TABLES} == dict.fromkeys(SURVEY_TABLES, 0)

    target = PostgresStore(pg_dsn)
    await target.open()
    try:
        assert await target.survey_list(limit=2) == before
        page, _ = await target.survey_list(limit=2, cursor=before[1])
        assert [r.id for r in page] == [sent[0].id]
        assert await target.survey_answered_by("mail", "r-1") == await target.survey_get(sent[0].id)
        assert (await target.survey_get(sent[0].id)).comment == "Fine"
        assert await target.survey_opted_out(sent[1].contact_id) == 3200.0
        assert await target.survey_due(9000.0, 60.0, 0.0, None, WINDOW, 10) == []
    finally:
        await target.close()
