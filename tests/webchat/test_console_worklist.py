"""The console on the conversation-list API of issue 14 (branch `ws-list`: read markers,
counts, filters, search, snooze, tags, priority, supervisor role), in real Chromium: unread
counts survive a reload, a supervisor reassigns a conversation to a named agent and both
agents' consoles follow, search finds a word from the middle of a message, and the
conversation actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, expect

from tests.gateway.conftest import agent_token, base_config, wait_for
from tests.webchat.conftest import (
    Console,
    PageWatch,
    console_gateway,
    new_page,
    routed_conversation,
    shot,
)
from tests.webchat.conftest import (
    GatewayFactory as Factory,
)

LEAD = "test-lead-token"


def _config(tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["auth"]["tokens"].append({"name": "lead", "role": "supervisor", "token": LEAD})
    return cfg


async def test_unread_counts_survive_a_reload(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, _config(tmp_path), ("alice",))
    seen = await routed_conversation(client, "u1", "I have read this one", "cust-u1", "Uma")
    news = await routed_conversation(client, "u2", "First message", "cust-u2", "Ulf")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await console.open(seen)
    code, _ = await client.inbound("u3", "Second message", "cust-u2", from_={"name": "Ulf"})
    assert code == 202
    badge = page.locator(f'#mine [data-id="{news}"] .badge')
    await expect(badge).to_have_text("2")
    await expect(page.locator(f'#mine [data-id="{seen}"] .badge')).to_have_count(0)
    await expect(page).to_have_title("(1) Switchboard")
    await page.screenshot(path=shot("console-unread.png"))

    await page.reload()
    await page.locator("#live.on").wait_for()
    await expect(badge).to_have_text("2")
    await expect(badge).to_have_attribute("aria-label", "2 unread")
    await expect(page.locator(f'#mine [data-id="{seen}"] .badge')).to_have_count(0)
    await expect(page).to_have_title("(1) Switchboard")

    await console.open(news)
    await expect(badge).to_have_count(0)
    await expect(page).to_have_title("Switchboard")

    async def read_on_the_server() -> bool:
        status, body = await client.call(
            "GET", "/v1/conversations?assignee=alice", token=agent_token("alice")
        )
        assert status == 200
        return {c["id"]: c["unread"] for c in body["conversations"]}[news] == 0

    await wait_for(read_on_the_server, timeout=5)
    await page.reload()
    await page.locator("#live.on").wait_for()
    await expect(page.locator(f'#mine [data-id="{news}"]')).to_be_visible()
    await expect(badge).to_have_count(0)
    await expect(page).to_have_title("Switchboard")
    assert watch.problems() == []
    await ctx.close()


async def test_a_supervisor_reassigns_to_a_named_agent_and_both_consoles_update(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, _config(tmp_path), ("alice",))
    conv_id = await routed_conversation(client, "s1", "Please call me back", "cust-s1", "Sam")
    status, body = await client.call("PUT", "/v1/agents/bob/presence", json={"status": "online"})
    assert status == 200, body
    contexts = [
        await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        for _ in range(3)
    ]
    alice, bob, lead = [Console(await new_page(c, watch)) for c in contexts]
    await alice.sign_in(base, agent_token("alice"))
    await bob.sign_in(base, agent_token("bob"))
    await lead.sign_in(base, LEAD)
    await expect(lead.page.locator("#role")).to_have_text("supervisor")
    await expect(alice.page.locator(f'#mine [data-id="{conv_id}"]')).to_be_visible()
    await expect(bob.page.locator(f'#mine [data-id="{conv_id}"]')).to_have_count(0)

    # The supervisor sees every conversation, by the agents' names.
    item = lead.page.locator(f'#results [data-id="{conv_id}"]')
    await expect(item).to_contain_text("Alice")
    await item.click()
    await expect(lead.page.locator("#conv-meta")).to_contain_text("assigned to Alice")
    await lead.page.get_by_label("Assign to", exact=True).select_option(label="Bob")
    await lead.page.get_by_role("button", name="Assign", exact=True).click()
    await expect(lead.page.locator("#conv-meta")).to_contain_text("assigned to Bob")
    await expect(lead.page.locator("#status")).to_have_text("Assigned to Bob.")
    await lead.page.screenshot(path=shot("console-supervisor.png"))

    await expect(bob.page.locator(f'#mine [data-id="{conv_id}"]')).to_be_visible()
    await expect(alice.page.locator(f'#mine [data-id="{conv_id}"]')).to_have_count(0)
    await expect(item).to_contain_text("Bob")
    conv = await client.conversation(conv_id)
    assert conv["assignee"] == "bob"
    await bob.open(conv_id)
    await expect(bob.message("Please call me back")).to_be_visible()
    await bob.page.screenshot(path=shot("console-reassigned-bob.png"))

    # Resolved conversations are a view of their own.
    await lead.page.get_by_role("button", name="Resolve").click()
    await expect(lead.page.locator("#conv-meta")).to_contain_text("resolved")
    await lead.page.locator("#view").select_option("resolved")
    await expect(lead.page.locator(f'#results [data-id="{conv_id}"]')).to_be_visible()
    await expect(lead.page.get_by_role("button", name="Reopen")).to_be_visible()
    await expect(bob.page.locator(f'#mine [data-id="{conv_id}"]')).to_have_count(0)
    assert watch.problems() == []
    for c in contexts:
        await c.close()


async def test_search_finds_a_word_from_the_middle_of_a_message(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, _config(tmp_path), ("alice",))
    filler = "lorem ipsum dolor sit amet " * 40
    text = filler + "my parcel went to Quixotic Street by mistake " + filler
    conv_id = await routed_conversation(client, "q1", text, "cust-q1", "Quinn")
    await routed_conversation(client, "q2", "Nothing to see here", "cust-q2", "Rita")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await page.locator("body").click(position={"x": 600, "y": 400})
    await page.keyboard.press("/")
    await expect(page.get_by_role("searchbox", name="Search")).to_be_focused()
    await page.keyboard.type("quixotic")
    await page.keyboard.press("Enter")
    results = page.locator("#search-results button.conv-item")
    await expect(results).to_have_count(1)
    await expect(results.first).to_have_attribute("data-id", conv_id)
    await expect(results.first.locator("mark")).to_have_text("Quixotic")
    await expect(results.first.locator(".snippet")).to_contain_text("Street by mistake")
    await page.screenshot(path=shot("console-search.png"))
    await results.first.click()
    await expect(page.locator("#conv-title")).to_have_text("Quinn")
    await page.get_by_role("button", name="Back to the list").click()
    await expect(page.locator("#search-box")).to_be_hidden()
    await expect(page.locator("#mine button.conv-item")).to_have_count(2)
    assert watch.problems() == []
    await ctx.close()


async def test_tags_priority_snooze_and_filters(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, _config(tmp_path), ("alice",))
    conv_id = await routed_conversation(client, "t1", "The app crashes on start", "cust-t1", "Tom")
    other = await routed_conversation(client, "t2", "How do I log in?", "cust-t2", "Tina")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await console.open(conv_id)

    tag_box = page.get_by_label("Add tag")
    await tag_box.fill("crash")
    await tag_box.press("Enter")
    await expect(page.locator('#conv-tags [data-tag="crash"]')).to_be_visible()
    await expect(page.locator(f'#mine [data-id="{conv_id}"] .tag')).to_have_text("crash")
    await page.get_by_label("Priority", exact=True).select_option("urgent")
    await expect(page.locator("#conv-meta")).to_contain_text("priority urgent")
    conv = await client.conversation(conv_id)
    assert conv["tags"][-1] == "crash" and conv["priority"] == "urgent"

    # The tag filter keeps only the tagged one.
    await page.locator("#filters summary").click()
    await page.get_by_label("Tag", exact=True).fill("crash")
    await page.get_by_label("Tag", exact=True).press("Tab")
    await expect(page.locator("#results button.conv-item")).to_have_count(1)
    await expect(page.locator(f'#results [data-id="{conv_id}"]')).to_be_visible()
    await page.screenshot(path=shot("console-filter.png"))
    await page.get_by_role("button", name="Clear filters").click()
    await expect(page.locator(f'#results [data-id="{other}"]')).to_be_visible()

    # Remove the tag again, then snooze and wake.
    await page.get_by_role("button", name="Remove tag crash").click()
    await expect(page.locator('#conv-tags [data-tag="crash"]')).to_have_count(0)
    await page.get_by_label("Snooze for").select_option("1h")
    await page.get_by_role("button", name="Snooze", exact=True).click()
    await expect(page.locator("#conv-meta")).to_contain_text("snoozed until")
    assert (await client.conversation(conv_id))["snoozed_until"]
    await page.get_by_role("button", name="Wake up now").click()
    await expect(page.locator("#conv-meta")).not_to_contain_text("snoozed until")
    assert (await client.conversation(conv_id))["snoozed_until"] is None
    assert watch.problems() == []
    await ctx.close()


async def test_a_field_clicked_while_a_conversation_loads_keeps_the_focus(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    """An agent who clicks a conversation and at once into its tag box (the conversation
    still loading on a slow link) types a tag, not a reply: the reply box takes the focus
    after the load only if the agent has not moved it."""
    client, base = await console_gateway(gateway_factory, _config(tmp_path), ("alice",))
    conv_id = await routed_conversation(client, "f1", "The app crashes on start", "cust-f1", "Fay")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    await Console(page).sign_in(base, agent_token("alice"))
    held: list[Any] = []

    async def hold(route: Any) -> None:
        held.append(route)  # the conversation's answer waits until the agent has typed

    await page.route(f"**/v1/conversations/{conv_id}", hold)
    await page.locator(f'#mine button.conv-item[data-id="{conv_id}"]').click()
    await wait_for(lambda: bool(held), timeout=10)
    tag_box = page.get_by_label("Add tag")
    await tag_box.click()
    await page.keyboard.type("crash")
    for route in held:
        await route.continue_()
    await page.unroute(f"**/v1/conversations/{conv_id}")
    await page.locator(f'#conv[data-loaded="{conv_id}"]').wait_for()
    await expect(tag_box).to_be_focused()
    await expect(tag_box).to_have_value("crash")
    await expect(page.get_by_label("Reply", exact=True)).to_have_value("")
    # Opened without the agent moving: the reply box has the focus, ready to type.
    await page.reload()
    await page.locator("#live.on").wait_for()
    await Console(page).open(conv_id)
    await expect(page.get_by_label("Reply", exact=True)).to_be_focused()
    assert watch.problems() == []
    await ctx.close()
