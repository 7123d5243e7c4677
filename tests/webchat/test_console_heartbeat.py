"""The console's presence heartbeat, in real Chromium: while the console is open its agent
stays online; once the page is gone the heartbeat lapses and the agent goes offline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from playwright.async_api import Browser

from tests.webchat.conftest import (
    Chat,
    Console,
    PageWatch,
    agent_token,
    new_page,
    wait_for,
)


async def presence(chat: Chat, agent: str) -> str:
    status, body = await chat.api.call("GET", "/v1/agents")
    assert status == 200
    return str(next(a["presence"] for a in body["agents"] if a["id"] == agent))


async def test_an_open_console_keeps_its_agent_online_and_a_closed_one_does_not(
    make_chat: Callable[..., Awaitable[Chat]], browser: Browser, watch: PageWatch
) -> None:
    chat = await make_chat()
    chat.gw.heartbeats.ttl = 1.5  # the console beats every 0.5 s
    chat.gw.presence.interval = 0.2
    chat.gw.deadlines.poke()
    context = await browser.new_context()
    page = await new_page(context, watch)
    await Console(page).sign_in(chat.base, agent_token("alice"))
    await page.get_by_label("Presence").select_option("online")
    await wait_for(lambda: _is(chat, "alice", "online"), timeout=5)
    await asyncio.sleep(3 * chat.gw.heartbeats.ttl)  # beats keep coming: still online
    assert await presence(chat, "alice") == "online"
    await page.screenshot(path="/tmp/leases-console-heartbeat.png")
    assert watch.problems() == []
    await context.close()  # the agent closed the console
    await wait_for(lambda: _is(chat, "alice", "offline"), timeout=5)
    assert await presence(chat, "bob") == "online"  # bob never had a console open


async def _is(chat: Chat, agent: str, value: str) -> bool:
    return await presence(chat, agent) == value
