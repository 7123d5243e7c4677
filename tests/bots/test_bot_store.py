"""The store's part in the bot stage, on SQLite and PostgreSQL: the handoff moves the
conversation with its new routing in one change, and the bot stage's reads of the
conversations it has use their own index (migrations SQLite 20, PostgreSQL 10)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Identity, InboundMessage
from gateway.bots.config import BOT_QUEUE
from gateway.store import SqliteStore
from gateway.store.base import (
    BotHandoff,
    Classification,
    ConversationFilter,
    IngestRequest,
    Store,
)
from gateway.store.sqlite.conversations import SqliteConversations


@pytest.fixture
async def store(store_config: dict[str, Any]) -> AsyncIterator[Store]:
    """The store of `store_config` (tests/bots/conftest.py): SQLite, then PostgreSQL."""
    if store_config.get("backend") == "postgres":
        from gateway.store.postgres import PostgresStore

        s: Store = PostgresStore(store_config["dsn"])
    else:
        s = SqliteStore(Path(store_config["path"]))
    await s.open()
    yield s
    await s.close()


async def test_a_handoff_moves_the_conversation_with_its_routing(store: Store) -> None:
    msg = InboundMessage("e1", Identity("api", "ann"), "my invoice is wrong")
    outcome = await store.ingest(
        IngestRequest(
            channel="api",
            channel_kind="api",
            message=msg,
            classify=lambda attrs: Classification(
                BOT_QUEUE, 1, {}, [], "self-service", ["held"], ["self-service"]
            ),
            now=100.0,
            reopen_window=3600.0,
        )
    )
    assert outcome.conversation is not None
    conv_id = outcome.conversation.id
    rows, _ = await store.list_conversations(ConversationFilter(status="open", queue=BOT_QUEUE))
    assert [c.id for c in rows] == [conv_id]
    facts = {
        "reason": "billing",
        "summary": "double",
        "language": "en",
        "skills": [],
        "priority": "high",
    }
    conv, events = await store.bot_handoff(
        BotHandoff(
            conv_id,
            "helper",
            "billing",
            2,
            {"billing": 5},
            ["from-bot"],
            {"rule": "b", "rules": ["b"], "reasons": ["held", "bot handed off"], "handoff": facts},
            facts,
        ),
        200.0,
    )
    assert conv.queue == "billing" and conv.routing["reasons"][-1] == "bot handed off"
    assert [e.type for e in events] == ["conversation.transferred", "bot.handoff"]
    assert events[0].data["by"] == "bot:helper" and events[0].data["handoff"] == facts
    assert events[1].data["queue"] == "billing" and events[1].data["summary"] == "double"
    stored = await store.get_conversation(conv_id)
    assert (stored.queue, stored.priority, stored.required_skills, stored.tags) == (
        "billing",
        2,
        {"billing": 5},
        ["from-bot"],
    )
    assert stored.routing["handoff"]["reason"] == "billing" and stored.status == "open"
    rows, _ = await store.list_conversations(ConversationFilter(status="open", queue=BOT_QUEUE))
    assert rows == []
    with pytest.raises(ValueError):
        await store.bot_record("conversation.resolved", {}, 300.0)


def test_the_bot_stage_reads_by_its_index(tmp_path: Path) -> None:
    import asyncio

    store = SqliteStore(tmp_path / "db.sqlite")
    asyncio.run(store.open())
    asyncio.run(store.close())
    sql, args = SqliteConversations.list_query(ConversationFilter(status="open", queue=BOT_QUEUE))
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert "conversations_list_queue_status" in plan, plan


async def test_a_late_handoff_leaves_a_conversation_an_agent_took(store: Store) -> None:
    """The bot timed out while an agent took the held conversation: the handoff is refused
    (Conflict) and the conversation stays with the agent, in its queue, unchanged."""
    from gateway.store.base import Conflict

    msg = InboundMessage("e2", Identity("api", "bea"), "where is my parcel")
    outcome = await store.ingest(
        IngestRequest(
            channel="api",
            channel_kind="api",
            message=msg,
            classify=lambda attrs: Classification(BOT_QUEUE, 1, {}, [], "bot", ["held"], ["bot"]),
            now=100.0,
            reopen_window=3600.0,
        )
    )
    assert outcome.conversation is not None
    conv_id = outcome.conversation.id
    await store.sync_agents([("alice", "online", {"default": 5})])
    await store.assign(conv_id, "alice", None, "alice", 150.0)
    with pytest.raises(Conflict):
        await store.bot_handoff(
            BotHandoff(conv_id, "helper", "billing", 2, {}, [], {"reasons": []}, {}),
            200.0,
        )
    conv = await store.get_conversation(conv_id)
    assert (conv.assignee, conv.queue, conv.status) == ("alice", BOT_QUEUE, "assigned")


async def test_a_handoff_whose_record_fails_leaves_neither_the_move_nor_the_record(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the move and its `bot.handoff` record (here: the record's write
    fails) rolls both back: the conversation is still the bot's, no event of it is logged,
    and the handoff made again afterwards goes through whole."""
    from gateway.store.postgres import conversations as pg_conversations
    from gateway.store.sqlite.connection import SqliteBase

    msg = InboundMessage("e3", Identity("api", "cy"), "refund please")
    outcome = await store.ingest(
        IngestRequest(
            channel="api",
            channel_kind="api",
            message=msg,
            classify=lambda attrs: Classification(BOT_QUEUE, 1, {}, [], "bot", ["held"], ["bot"]),
            now=100.0,
            reopen_window=3600.0,
        )
    )
    assert outcome.conversation is not None
    conv_id = outcome.conversation.id
    logged = [e.id for e in await store.events_since(0, 1000)]

    def failing(write: Any) -> Any:
        def fail_on_record(conn: Any, now: float, new: list[Any]) -> Any:
            if any(ev.type == "bot.handoff" for ev in new):
                raise RuntimeError("crash before the record")
            return write(conn, now, new)

        return fail_on_record

    if isinstance(store, SqliteBase):
        monkeypatch.setattr(store, "_events", failing(SqliteBase._events))
    else:
        monkeypatch.setattr(
            pg_conversations, "append_events", failing(pg_conversations.append_events)
        )
    handoff = BotHandoff(conv_id, "helper", "billing", 2, {}, [], {"reasons": []}, {})
    with pytest.raises(RuntimeError):
        await store.bot_handoff(handoff, 200.0)
    conv = await store.get_conversation(conv_id)
    assert (conv.queue, conv.status) == (BOT_QUEUE, "open")
    assert [e.id for e in await store.events_since(0, 1000)] == logged

    monkeypatch.undo()
    conv, events = await store.bot_handoff(handoff, 300.0)
    assert conv.queue == "billing"
    assert [e.type for e in events] == ["conversation.transferred", "bot.handoff"]


async def test_a_bot_turn_is_claimed_by_one_holder_until_released_or_expired(
    store: Store,
) -> None:
    assert await store.bot_turn_claim("cv_1", "a", 60)
    assert not await store.bot_turn_claim("cv_1", "b", 60)
    assert await store.bot_turn_claim("cv_1", "a", 60)  # its own: renewed
    assert await store.bot_turn_claim("cv_2", "b", 60)  # another conversation's turn
    await store.bot_turn_release("cv_1", "b")  # not b's: nothing happens
    assert not await store.bot_turn_claim("cv_1", "b", 60)
    await store.bot_turn_release("cv_1", "a")
    assert await store.bot_turn_claim("cv_1", "b", 0.2)
    # A holder that died: its claim runs out (by the database's clock), then c gets it.
    assert not await store.bot_turn_claim("cv_1", "c", 60)
    deadline = time.monotonic() + 5
    while not await store.bot_turn_claim("cv_1", "c", 60):
        assert time.monotonic() < deadline, "the claim never ran out"
        await asyncio.sleep(0.05)
