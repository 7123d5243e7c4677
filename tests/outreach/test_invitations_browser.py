"""Proactive invitations of the chat widget in real Chromium (issue 15): a page matching a
rule (URL, time on page, visitor attributes) shows the bubble after the time, in the
visitor's language; nothing is opened until the visitor writes, and then the conversation
says which rule invited it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from gateway.metrics import METRICS
from tests.gateway.conftest import Client, gateway_factory
from tests.webchat.conftest import (
    CHANNEL,
    Chat,
    PageWatch,
    Widget,
    artifact,
    browser,
    free_port,
    make_chat,
    new_page,
    receive,
    watch,
    webchat_config,
)

__all__ = ["browser", "gateway_factory", "make_chat", "watch"]

RULES = [
    {
        "name": "pricing-pro",
        "when": {"url": "/pricing*", "seconds_on_page": 2, "attributes": {"plan": "pro"}},
        "text": {
            "de": "Fragen zu den Preisen? Wir helfen gern.",
            "en": "Questions about pricing? We are happy to help.",
        },
    }
]


class ShopSite:
    """A real shop site on its own origin (a local server: Chromium refuses a page that
    does not come from the network to reach the local gateway) embedding the widget on
    every path; the visitor attributes come from the query (`?plan=`)."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def page(self, request: web.Request) -> web.Response:
        plan = request.query.get("plan", "")
        attributes = json.dumps({"plan": plan}) if plan else "{}"
        html = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title></head>"
            "<body><h1>Shop</h1>"
            f"<script src='{self.gateway}/webchat/{CHANNEL}/widget.js'"
            f" data-attributes='{attributes}' async></script></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.page)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def shop(
    make_chat: Callable[..., Awaitable[Chat]],
) -> AsyncIterator[tuple[Chat, ShopSite]]:
    chat = await make_chat(invitations=RULES, allowed_origins=["*"])
    site = ShopSite(chat.base)
    await site.start()
    yield chat, site
    await site.stop()


async def invited_chat(make_chat: Callable[..., Awaitable[Chat]]) -> Chat:
    return await make_chat(invitations=RULES)


async def test_invitation_in_german_opens_nothing_until_the_visitor_writes(
    shop: tuple[Chat, ShopSite], browser: Browser, watch: PageWatch
) -> None:
    chat, site = shop
    ctx = await browser.new_context(locale="de-DE")
    page = await new_page(ctx, watch)
    widget = Widget(page)
    invitation = page.get_by_test_id("invitation")
    started = time.monotonic()
    await page.goto(site.base + "/pricing/team?plan=pro")
    await expect(widget.bubble).to_be_visible()
    await expect(invitation).to_be_visible(timeout=10_000)
    assert time.monotonic() - started >= 2.0  # not before the rule's time on the page
    await expect(invitation).to_contain_text("Fragen zu den Preisen? Wir helfen gern.")
    await expect(invitation.get_by_role("button", name="Einladung schließen")).to_be_visible()
    await page.screenshot(path=artifact("widget-invitation-de.png"))
    # Shown, but nothing is opened: no conversation, no contact.
    assert await chat.conversations() == []

    # The visitor answers: the chat opens with the invitation, and writing opens the
    # conversation, which says which rule invited it.
    await invitation.locator(".invite-text").click()
    await expect(widget.panel).to_be_visible()
    await expect(invitation).to_be_hidden()
    await expect(widget.message("Fragen zu den Preisen? Wir helfen gern.", "out")).to_be_visible()
    await widget.skip_prechat()
    await widget.send("Ist das Team-Paket monatlich kündbar?")
    await expect(widget.message("Ist das Team-Paket monatlich kündbar?")).to_have_attribute(
        "data-state", "sent"
    )
    [conv] = await chat.conversations()
    assert conv["routing"]["reasons"][0] == "invited by rule pricing-pro"
    status, contact = await chat.api.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200 and contact["attributes"]["invited_by"] == "pricing-pro"
    assert watch.problems() == []
    await ctx.close()


async def test_invitation_in_english_only_where_the_rule_holds(
    shop: tuple[Chat, ShopSite], browser: Browser, watch: PageWatch
) -> None:
    chat, site = shop
    ctx = await browser.new_context(locale="en-US")
    page = await new_page(ctx, watch)
    widget = Widget(page)
    invitation = page.get_by_test_id("invitation")

    async def stayed_hidden(url: str) -> None:
        await page.goto(url)
        await expect(widget.bubble).to_be_visible()
        # Past the rule's time on the page (a negative can only be seen by waiting).
        await page.wait_for_function("performance.now() > 3000", polling=100)
        await expect(invitation).to_be_hidden()

    await stayed_hidden(site.base + "/about?plan=pro")  # another page
    await stayed_hidden(site.base + "/pricing/team?plan=free")  # another plan

    await page.goto(site.base + "/pricing/team?plan=pro")
    await expect(invitation).to_be_visible(timeout=10_000)
    await expect(invitation).to_contain_text("Questions about pricing? We are happy to help.")
    await page.screenshot(path=artifact("widget-invitation-en.png"))
    # Dismissed: gone, and not shown again in this tab after a reload.
    await invitation.get_by_role("button", name="Dismiss invitation").click()
    await expect(invitation).to_be_hidden()
    await page.reload()
    await expect(widget.bubble).to_be_visible()
    await page.wait_for_function("performance.now() > 3000", polling=100)
    await expect(invitation).to_be_hidden()
    assert await chat.conversations() == []
    assert watch.problems() == []
    await ctx.close()


async def test_invitation_rules_are_served_to_allowed_origins_only(
    make_chat: Callable[..., Awaitable[Chat]],
) -> None:
    chat = await invited_chat(make_chat)
    url = f"{chat.base}/webchat/{CHANNEL}/invitations"
    async with chat.http.get(url, headers={"Origin": chat.origin}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == chat.origin
        body: dict[str, Any] = await resp.json()
    assert body["invitations"][0]["name"] == "pricing-pro"
    assert body["invitations"][0]["url"] == "/pricing*"
    async with chat.http.get(url, headers={"Origin": "https://evil.test"}) as resp:
        assert resp.status == 403


async def test_an_answer_names_its_invitation_and_an_unknown_name_is_ignored(
    make_chat: Callable[..., Awaitable[Chat]],
) -> None:
    chat = await invited_chat(make_chat)
    before = answered("pricing-pro")
    ws, _ = await chat.visitor()
    await ws.send_json(
        {"type": "message", "client_id": "c1", "text": "Hallo", "invitation": "pricing-pro"}
    )
    ack = await receive_type(ws, "ack")
    assert ack["client_id"] == "c1"
    assert answered("pricing-pro") == before + 1  # for the support leaders (Prometheus)
    [conv] = await chat.conversations()
    assert conv["routing"]["reasons"][0] == "invited by rule pricing-pro"
    other, _ = await chat.visitor()
    await other.send_json(
        {"type": "message", "client_id": "c2", "text": "Hi", "invitation": "made-up"}
    )
    await receive_type(other, "ack")
    convs = await chat.conversations()
    assert len(convs) == 2
    newest = next(c for c in convs if c["id"] != conv["id"])
    assert not any("invited" in r for r in newest["routing"]["reasons"])


def answered(invitation: str) -> float:
    value = METRICS.registry.get_sample_value(
        "switchboard_invitations_answered_total", {"channel": CHANNEL, "invitation": invitation}
    )
    return value or 0.0


async def receive_type(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = await receive(ws)
        if frame["type"] == kind:
            return frame


async def test_a_routing_rule_can_use_the_invitation(
    gateway_factory: Callable[..., Awaitable[tuple[Any, Client]]], tmp_path: Path
) -> None:
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port, invitations=RULES)
    cfg["routing"]["rules"].insert(
        0,
        {
            "name": "invited-to-billing",
            "when": {"contact": {"invited_by": "pricing-pro"}},
            "then": {"queue": "billing"},
        },
    )
    gw, client = await gateway_factory(cfg)
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        chat = Chat(gw, client, base, base, http)
        ws, _ = await chat.visitor()
        await ws.send_json(
            {"type": "message", "client_id": "c1", "text": "Hallo", "invitation": "pricing-pro"}
        )
        await receive_type(ws, "ack")
        [conv] = await chat.conversations()
        assert conv["queue"] == "billing"
        assert conv["routing"]["rule"] == "invited-to-billing"
        await ws.close()
