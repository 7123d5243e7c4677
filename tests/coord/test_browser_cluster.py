"""Two instances in a real browser (Chromium): the visitor's widget talks to instance B,
the agent's console to instance A; they chat live, typing indicators included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from gateway.app import Gateway
from tests.coord.test_fanout import cluster_config
from tests.gateway.conftest import Client, agent_token, wait_for
from tests.webchat.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    Console,
    PageWatch,
    Widget,
    browser,
    free_port,
    new_page,
    watch,
)

MakeGateway = Callable[..., Awaitable[tuple[Gateway, Client]]]


@pytest.mark.timeout(180)
async def test_a_visitor_on_b_and_an_agent_on_a_chat_live(
    gateway_factory: MakeGateway,
    tmp_path: Path,
    pg_dsn: str,
    redis_url: str,
    browser: Browser,  # noqa: F811
    watch: PageWatch,  # noqa: F811
) -> None:
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    clients = []
    for port in ports:
        cfg = cluster_config(tmp_path, pg_dsn, redis_url)
        cfg["server"]["port"] = port
        cfg["channels"][-1]["allowed_origins"] = bases
        cfg["channels"][-1]["title"] = "Cluster shop chat"
        clients.append(await gateway_factory(cfg))
    (_, a), _ = clients
    base_a, base_b = bases

    visitor_ctx = await browser.new_context(viewport={"width": 1100, "height": 760})
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await new_page(visitor_ctx, watch)
    await page.goto(base_b + "/")
    widget = Widget(page)
    await widget.open()
    await expect(page.locator("#sbw-title")).to_have_text("Cluster shop chat")
    await widget.skip_prechat()
    await widget.send("Hi, I am on instance B")
    await expect(widget.message("Hi, I am on instance B")).to_have_attribute("data-state", "sent")

    async def assigned() -> dict[str, str] | None:
        status, body = await a.call("GET", "/v1/conversations?channel=webchat")
        convs = body["conversations"] if status == 200 else []
        return convs[0] if convs and convs[0]["assignee"] else None

    conv = await wait_for(assigned, timeout=10)
    console_page = await new_page(agent_ctx, watch)
    console = Console(console_page)
    await console.sign_in(base_a, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    await expect(console.message("Hi, I am on instance B")).to_be_visible()

    # Typing both ways, across the instances.
    await widget.input.press_sequentially("It was ord", delay=20)
    await expect(console_page.locator("#typing")).to_be_visible()
    await widget.input.fill("")
    await console_page.get_by_label("Reply", exact=True).press_sequentially("Let me ch", delay=20)
    await expect(widget.typing).to_be_visible()

    # The visitor writes again (on B): the console on A shows it without a reload.
    await widget.send("Order 1234")
    await expect(console.message("Order 1234")).to_be_visible()

    # The agent replies on A: the visitor on B sees it; the console says sent.
    await console.reply("Found it: it arrives tomorrow.")
    await expect(widget.message("Found it: it arrives tomorrow.", "out")).to_be_visible()
    await expect(console.message("Found it: it arrives tomorrow.").locator(".state")).to_have_text(
        "sent"
    )
    await page.screenshot(path="/tmp/coord-widget-on-b.png")
    await console_page.screenshot(path="/tmp/coord-console-on-a.png")
    assert watch.problems() == []
