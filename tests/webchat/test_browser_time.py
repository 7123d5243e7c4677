"""The widget in a real browser (Chromium through Playwright) tells the visitor, in the
browser's language, that the business is closed and when it is back, and where they stand
in the queue with the estimated wait, updated live."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.webchat.conftest import (
    Chat,
    PageWatch,
    Widget,
    artifact,
    free_port,
    new_page,
    receive,
    webchat_config,
)

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {
    "timezone": "Europe/Berlin",
    "weekly": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
}


class Clock:
    """Wall time moved to a chosen instant (the gateway's injected clock)."""

    def __init__(self, local: str) -> None:
        start = dt.datetime.fromisoformat(local).replace(tzinfo=BERLIN).timestamp()
        self.offset = start - dt.datetime.now(dt.UTC).timestamp()

    def __call__(self) -> float:
        return dt.datetime.now(dt.UTC).timestamp() + self.offset


Start = Callable[[Clock, Callable[[dict[str, Any]], None]], Awaitable[Chat]]


@pytest.fixture
async def start(gateway_factory: Any, tmp_path: Path) -> AsyncIterator[Start]:
    """A gateway with the widget, its config changed by `mutate`, on `clock`."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(clock: Clock, mutate: Callable[[dict[str, Any]], None]) -> Chat:
        port = free_port()
        cfg = webchat_config(tmp_path / "db.sqlite", port)
        mutate(cfg)
        gw, client = await gateway_factory(cfg, clock=clock)
        http = aiohttp.ClientSession()
        sessions.append(http)
        base = f"http://127.0.0.1:{port}"
        return Chat(gw, client, base, base, http)

    yield make
    for http in sessions:
        await http.close()


def office_hours(cfg: dict[str, Any]) -> None:
    cfg["routing"]["hours"] = {"office": OFFICE}
    cfg["routing"]["default_hours"] = "office"


def everyone_busy(cfg: dict[str, Any]) -> None:
    for agent in cfg["agents"]:
        agent["capacity"] = {"default": 0}  # online, but no room: conversations wait


async def test_closed_notice_in_the_visitors_language(
    start: Start, browser: Browser, watch: PageWatch
) -> None:
    chat = await start(Clock("2026-03-23 06:30"), office_hours)
    for locale, text in (
        ("de-DE", "Wir haben geschlossen und sind ab 08:00 Uhr wieder da."),
        ("en-GB", "We're closed, back at 08:00."),
    ):
        ctx = await browser.new_context(locale=locale, viewport={"width": 1000, "height": 720})
        page = await new_page(ctx, watch)
        await page.goto(chat.base + "/")
        widget = Widget(page)
        await widget.open()
        note = page.locator("section.panel .waitnote")
        await expect(note).to_have_text(text)  # before the visitor writes anything
        await expect(widget.banner).to_be_hidden()  # not "nobody is online": closed says more
        await widget.skip_prechat()
        await widget.send("Ist jemand da?" if locale == "de-DE" else "Anyone there?")
        await expect(note).to_have_text(text)  # still closed after writing
        await page.screenshot(path=artifact(f"widget-closed-{locale}.png"))
        await ctx.close()
    assert watch.problems() == []


async def test_queue_position_and_estimated_wait_update_live(
    start: Start, browser: Browser, watch: PageWatch
) -> None:
    chat = await start(Clock("2026-03-23 10:00"), everyone_busy)
    api = chat.api
    # One conversation handled in the last half hour: the recent handling rate.
    _, earlier = await api.inbound("e1", "earlier question", sender="early")
    status, _ = await api.call(
        "POST",
        f"/v1/conversations/{earlier['conversation_id']}/assign",
        json={"agent": "alice", "force": True},
    )
    assert status == 200
    # Someone else is already waiting (a raw widget socket).
    ws, _ = await chat.visitor()
    await ws.send_json({"type": "message", "client_id": "c1", "text": "first in line"})
    while (await receive(ws))["type"] != "ack":
        pass
    [first] = await chat.conversations()

    ctx = await browser.new_context(locale="en-US", viewport={"width": 1000, "height": 720})
    page = await new_page(ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("second in line")
    note = page.locator("section.panel .waitnote")
    await expect(note).to_have_text(
        "You are number 2 in the queue. Estimated wait: about 60 min.", timeout=10_000
    )
    await page.screenshot(path=artifact("widget-queue-position.png"))

    # The first in line is taken: the visitor moves up, without a reload.
    await api.call(
        "POST", f"/v1/conversations/{first['id']}/assign", json={"agent": "bob", "force": True}
    )
    await expect(note).to_have_text(
        "You are number 1 in the queue. Estimated wait: about 15 min.", timeout=10_000
    )
    # Now an agent takes this one: the notice goes away.
    [mine] = [c for c in await chat.conversations() if c["id"] != first["id"]]
    await api.call(
        "POST", f"/v1/conversations/{mine['id']}/assign", json={"agent": "alice", "force": True}
    )
    await expect(note).to_be_hidden(timeout=10_000)
    assert watch.problems() == []
    await ctx.close()


async def test_the_socket_hears_closed_in_its_welcome(start: Start) -> None:
    chat = await start(Clock("2026-03-27 19:00"), office_hours)  # a Friday evening
    for language, text in (
        ("de-DE", "Wir haben geschlossen und sind am Montag ab 08:00 Uhr wieder da."),
        ("en", "We're closed, back on Monday at 08:00."),
    ):
        ws = await chat.connect()
        await ws.send_json({"type": "hello", "token": None, "language": language})
        welcome = await receive(ws)  # the first frame, as the protocol says
        assert welcome["type"] == "welcome", welcome
        status = welcome["status"]
        assert (status["state"], status["opens_time"], status["text"]) == ("closed", "08:00", text)
        await ws.close()
