"""Proactive invitations only when someone can answer, in real Chromium: the bubble
appears while an agent is online, not while nobody is (unless the rule opts in), not when
the last agent went offline while the visitor was reading the page; each one shown is
counted for the support leaders (Prometheus)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from gateway.metrics import METRICS
from tests.webchat.conftest import ADMIN, CHANNEL, Chat, PageWatch, Widget, new_page, wait_for

SALES = "Questions? Talk to us now."
NOTE = "Nobody is here right now: leave us a message."
RULES = [
    {"name": "sales", "when": {"url": "/"}, "text": {"en": SALES}},
    {
        "name": "leave-a-message",
        "when": {"url": "/?contact*", "also_when_unavailable": True},
        "text": {"en": NOTE},
    },
]


def shown(invitation: str) -> float:
    value = METRICS.registry.get_sample_value(
        "switchboard_invitations_shown_total", {"channel": CHANNEL, "invitation": invitation}
    )
    return value or 0.0


async def set_presence(chat: Chat, status: str) -> None:
    for agent in ("alice", "bob"):  # carol is offline already
        code, body = await chat.api.call(
            "PUT", f"/v1/agents/{agent}/presence", json={"status": status}, token=ADMIN
        )
        assert code == 200, body


async def available(chat: Chat) -> bool:
    url = f"{chat.base}/webchat/{CHANNEL}/invitations"
    async with chat.http.get(url, headers={"Origin": chat.origin}) as resp:
        body: dict[str, Any] = await resp.json()
    return bool(body["available"])


async def rules_on_load(page: Page, url: str) -> list[str]:
    """Open `url`; the names of the invitations the widget was offered on load."""
    async with page.expect_response(lambda r: r.url.endswith("/invitations")) as info:
        await page.goto(url)
    body = await (await info.value).json()
    return [rule["name"] for rule in body["invitations"]]


async def test_an_invitation_appears_only_while_an_agent_is_online(
    make_chat: Any, browser: Browser, watch: PageWatch
) -> None:
    chat: Chat = await make_chat(invitations=RULES)
    ctx = await browser.new_context(locale="en-US")
    page = await new_page(ctx, watch)
    invitation = page.get_by_test_id("invitation")

    # Alice and Bob are online: invited, and the widget reports it shown.
    before = shown("sales")
    async with page.expect_response(lambda r: r.url.endswith("/sales/shown")) as report:
        await page.goto(chat.base + "/")
        await expect(invitation).to_be_visible()
    assert (await report.value).status == 204
    await expect(invitation).to_contain_text(SALES)
    assert shown("sales") == before + 1

    # Nobody is online: no invitation, only the rule that opts in to such times.
    await set_presence(chat, "offline")
    await wait_for(lambda: _not(available(chat)), timeout=10)
    assert await rules_on_load(page, chat.base + "/") == ["leave-a-message"]
    await expect(Widget(page).bubble).to_be_visible()
    await expect(invitation).to_be_hidden()
    # Both rules hold on this page and "sales" comes first: the note shows as it is the
    # only one offered.
    await page.goto(chat.base + "/?contact=1")
    await expect(invitation).to_contain_text(NOTE)
    await expect(invitation).not_to_contain_text(SALES)
    assert shown("sales") == before + 1
    assert watch.problems() == []
    await ctx.close()


async def test_the_widget_asks_again_before_it_invites(
    make_chat: Any, browser: Browser, watch: PageWatch
) -> None:
    rules = [{"name": "sales", "when": {"seconds_on_page": 4}, "text": {"en": SALES}}]
    chat: Chat = await make_chat(invitations=rules)
    ctx = await browser.new_context(locale="en-US")
    page = await new_page(ctx, watch)
    # Loaded while Alice and Bob are online: the rule is offered.
    assert await rules_on_load(page, chat.base + "/") == ["sales"]
    # They leave while the visitor reads the page (before the rule's time on the page).
    await set_presence(chat, "offline")
    await wait_for(lambda: _not(available(chat)), timeout=3)
    async with page.expect_response(
        lambda r: r.url.endswith("/invitations"), timeout=10_000
    ) as again:
        pass  # the widget's own check when the time has come
    assert (await (await again.value).json())["invitations"] == []
    await expect(page.get_by_test_id("invitation")).to_be_hidden()
    assert watch.problems() == []
    await ctx.close()


async def _not(value: Any) -> bool:
    return not await value
