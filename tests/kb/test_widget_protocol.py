"""The widget's suggestion frames, spoken directly over the WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.schemas import ConversationWithMessages
from gateway.app import Gateway
from tests.gateway.conftest import Client, gateway_factory  # noqa: F401 - fixture by name
from tests.webchat.conftest import CHANNEL, free_port, receive, webchat_config

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"


async def visitor(
    http: aiohttp.ClientSession, base: str, language: str = "en"
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await http.ws_connect(f"{base}/webchat/{CHANNEL}/ws", origin=base)
    await ws.send_json({"type": "hello", "token": None, "language": language})
    welcome = await receive(ws)
    assert welcome["type"] == "welcome"
    return ws, welcome


@pytest.fixture
async def make(
    gateway_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(with_kb: bool) -> tuple[Gateway, Client, str, aiohttp.ClientSession]:
        port = free_port()
        cfg = webchat_config(tmp_path / f"db{port}.sqlite", port)
        if with_kb:
            cfg["knowledge_base"] = {"path": str(DEMO_KB)}
        gw, client = await gateway_factory(cfg)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return gw, client, f"http://127.0.0.1:{port}", http

    yield start
    for s in sessions:
        await s.close()


async def test_suggest_answers_in_the_visitors_language(make: Any) -> None:
    _, client, base, http = await make(True)
    ws, welcome = await visitor(http, base, "de-CH")
    assert welcome["suggest"] is True
    await ws.send_json(
        {"type": "suggest", "id": "s1", "text": "Wie ändere ich meine Rechnungsadresse"}
    )
    frame = await receive(ws)
    assert frame["type"] == "suggestions" and frame["id"] == "s1"
    top = frame["items"][0]
    assert (top["slug"], top["language"], top["url"]) == (
        "rechnungsadresse",
        "de",
        "/help/de/rechnungsadresse",
    )
    assert ["Rechnungsadresse", True] in top["snippet"]
    assert frame["texts"]["question"] == "Hat das Ihre Frage beantwortet?"
    # A stray word suggests nothing; an empty text too.
    await ws.send_json({"type": "suggest", "id": "s2", "text": "xq"})
    assert (await receive(ws))["items"] == []
    # Malformed frames are refused, the socket stays.
    for bad in (
        {"type": "suggest", "id": "s 3", "text": "refund"},
        {"type": "suggest", "id": "s4", "text": "x" * 501},
        {"type": "suggestion", "event": "shown", "items": [{"slug": "../etc", "language": "de"}]},
        {"type": "suggestion", "event": "exploded", "items": [{"slug": "a", "language": "de"}]},
        {"type": "suggestion", "event": "shown", "items": []},
    ):
        await ws.send_json(bad)
        assert (await receive(ws))["code"] == "invalid_frame", bad
    # A message naming malformed suggestions is taken, without them.
    await ws.send_json(
        {"type": "message", "client_id": "m1", "text": "Hallo", "suggestions": [{"slug": 5}]}
    )
    ack = await receive(ws)
    assert ack["type"] == "ack"
    _, conv = await client.call("GET", f"/v1/conversations/{ack['conversation_id']}")
    assert conv["messages"][0]["kb_suggestions"] == []
    # Well-formed ones stay on the message, as the API document describes them.
    await ws.send_json(
        {
            "type": "message",
            "client_id": "m2",
            "text": "Doch noch eine Frage",
            "suggestions": [{"slug": "rechnungsadresse", "language": "de"}],
        }
    )
    assert (await receive(ws))["type"] == "ack"
    _, conv = await client.call("GET", f"/v1/conversations/{ack['conversation_id']}")
    checked = ConversationWithMessages.model_validate(conv)
    assert checked.messages[1].kb_suggestions[0].slug == "rechnungsadresse"
    await ws.close()


async def test_without_a_knowledge_base_the_widget_is_told_not_to_ask(make: Any) -> None:
    gw, _, base, http = await make(False)
    ws, welcome = await visitor(http, base)
    assert welcome["suggest"] is False
    await ws.send_json({"type": "suggest", "id": "s1", "text": "refund"})
    assert (await receive(ws))["items"] == []
    # Recording still works: the events do not depend on the articles being there.
    await ws.send_json(
        {
            "type": "suggestion",
            "event": "answered",
            "helpful": True,
            "items": [{"slug": "refund", "language": "en"}],
        }
    )
    await ws.send_json({"type": "ping"})
    assert (await receive(ws))["type"] == "pong"
    events = [e for e in await gw.store.events_since(0, 100) if e.type.startswith("kb.")]
    assert [(e.type, e.data["helpful"]) for e in events] == [("kb.suggestion.answered", True)]
    await ws.close()
