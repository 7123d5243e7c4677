"""The console's notes, canned replies and contact panel (issue 14) in real Chromium: a note
written in the console never reaches the visitor's widget, a canned reply picked with `/`
is sent filled in, and a merge done in the contact panel can be undone there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Browser, expect

from gateway.app import Gateway
from tests.gateway.conftest import ADMIN, Client, agent_token, base_config, wait_for
from tests.webchat.conftest import Chat, Console, PageWatch, Widget, new_page, shot

Factory = Callable[..., Awaitable[tuple[Gateway, Client]]]


async def test_a_note_from_the_console_never_reaches_the_widget(
    chat: Chat, browser: Browser, watch: PageWatch
) -> None:
    visitor_ctx = await browser.new_context(viewport={"width": 1000, "height": 760})
    page = await new_page(visitor_ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("My order has not arrived")
    await expect(widget.message("My order has not arrived")).to_have_attribute("data-state", "sent")
    conv = await chat.assigned()

    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    console = Console(await new_page(agent_ctx, watch))
    await console.sign_in(chat.base, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    await console.page.get_by_label("Internal note", exact=True).check()
    box = console.page.get_by_label("Internal note (agents only)")
    await box.fill("SECRET: courier lost it, refund without asking")
    await box.press("Enter")
    note = console.message("SECRET: courier lost it")
    await expect(note).to_have_class("msg note")
    await expect(note.locator(".note-label")).to_have_text("Internal note")
    await console.page.screenshot(path=shot("console-note.png"))

    await console.page.get_by_label("Reply to the customer").check()
    await console.reply("We are on it, you will hear from us today.")
    await expect(
        widget.message("We are on it, you will hear from us today.", "out")
    ).to_be_visible()
    assert not any("SECRET" in text for text in await widget.texts())
    # Nor after a reload (the history comes from the server again).
    await page.reload()
    widget = Widget(page)
    await widget.open()
    await expect(
        widget.message("We are on it, you will hear from us today.", "out")
    ).to_be_visible()
    assert not any("SECRET" in text for text in await widget.texts())
    assert watch.problems() == []
    await visitor_ctx.close()
    await agent_ctx.close()


async def test_a_canned_reply_is_sent_filled_in(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["canned_replies"] = [
        {
            "shortcut": "thanks",
            "title": "Thank you",
            "text": {
                "en": "Hello {{contact.name}}, {{agent.name}} here (case {{conversation.id}}).",
                "de": "Hallo {{contact.name}}, hier ist {{agent.name}} (Fall {{conversation.id}}).",
            },
        },
        {"shortcut": "bye", "title": "Goodbye", "text": {"en": "Goodbye!"}},
    ]
    gw, client = await gateway_factory(cfg)
    base = f"http://127.0.0.1:{gw.port}"
    code, body = await client.inbound("c1", "Hi there", from_={"name": "Dana Fox"})
    assert code == 202, body
    conv_id = body["conversation_id"]
    conv = await wait_for(lambda: client.assigned(conv_id), timeout=10)
    agent = conv["assignee"]
    names = {"alice": "Alice", "bob": "Bob", "carol": "Carol"}

    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    console = Console(await new_page(ctx, watch))
    await console.sign_in(base, agent_token(agent))
    await console.open(conv_id)
    box = console.page.get_by_label("Reply", exact=True)
    await box.press_sequentially("/th", delay=30)
    listbox = console.page.get_by_role("listbox", name="Canned replies")
    await expect(listbox).to_be_visible()
    await expect(listbox.get_by_role("option")).to_have_count(1)
    await expect(listbox.get_by_role("option")).to_contain_text("/thanks")
    await console.page.screenshot(path=shot("console-canned.png"))
    await box.press("Enter")
    filled = f"Hello Dana Fox, {names[agent]} here (case {conv_id})."
    await expect(box).to_have_value(filled)
    await expect(listbox).to_be_hidden()
    await box.press("Enter")
    await expect(console.message(filled)).to_be_visible()
    sent = await client.conversation(conv_id)
    assert [m["text"] for m in sent["messages"] if m["direction"] == "out"] == [filled]
    assert watch.problems() == []
    await ctx.close()


async def test_merge_then_undo_in_the_contact_panel(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    base = f"http://127.0.0.1:{gw.port}"
    code, first = await client.inbound(
        "m1", "Hello from my phone", "cust-a", from_={"name": "Dana"}
    )
    assert code == 202
    code, second = await client.inbound(
        "m2", "Hello from my laptop", "cust-b", from_={"name": "Dana F."}
    )
    assert code == 202
    conv = await wait_for(lambda: client.assigned(first["conversation_id"]), timeout=10)
    other = await client.conversation(second["conversation_id"])
    keep, gone = conv["contact_id"], other["contact_id"]

    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, ADMIN)
    await page.locator("#view").select_option("all")
    await page.locator(f'#results [data-id="{conv["id"]}"]').click()
    await expect(page.locator("#c-identities li")).to_have_count(1)
    await page.get_by_label("Merge another contact into this one").fill("api:cust-b")
    await page.get_by_role("button", name="Merge", exact=True).click()
    await expect(page.locator("#status")).to_have_text("Merged.")
    await expect(page.locator("#c-identities li")).to_have_count(2)
    await expect(page.locator("#c-identities")).to_contain_text("api: cust-b")
    await expect(page.locator("#c-conversations li")).to_have_count(2)
    await expect(console.message("Hello from my laptop")).to_be_visible()
    assert (await client.conversation(other["id"]))["contact_id"] == keep
    await page.screenshot(path=shot("console-merged.png"))

    await page.locator("#c-merges").get_by_role("button", name="Undo").click()
    await expect(page.locator("#status")).to_have_text("Merge undone.")
    await expect(page.locator("#c-identities li")).to_have_count(1)
    await expect(page.locator("#c-identities")).not_to_contain_text("cust-b")
    await expect(page.locator("#c-merges")).to_contain_text("undone")
    await expect(console.message("Hello from my laptop")).to_have_count(0)
    assert (await client.conversation(other["id"]))["contact_id"] == gone
    await page.screenshot(path=shot("console-unmerged.png"))
    assert watch.problems() == []
    await ctx.close()


async def test_contact_attributes_edited_in_the_panel(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite"))
    base = f"http://127.0.0.1:{gw.port}"
    code, body = await client.inbound("e1", "Hallo!", "cust-e", from_={"name": "Eva"})
    assert code == 202
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]), timeout=10)
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    await page.get_by_label("Name", exact=True).fill("Eva Weber")
    await page.get_by_label("Preferred language").fill("de")
    await page.get_by_label("Segment").fill("vip")
    await page.get_by_label("New attribute").fill("plan")
    await page.get_by_label("Value", exact=True).fill("gold")
    await page.get_by_role("button", name="Save contact").click()
    await expect(page.locator("#status")).to_have_text("Contact saved.")
    await expect(page.locator("#conv-title")).to_have_text("Eva Weber")
    await expect(page.get_by_label("plan", exact=True)).to_have_value("gold")
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200
    assert contact["name"] == "Eva Weber"
    assert contact["attributes"]["segment"] == "vip"
    assert contact["attributes"]["language"] == "de"
    assert contact["attributes"]["plan"] == "gold"
    # Shown the same after a reload, and in the list by the new name.
    await page.reload()
    await page.locator("#live.on").wait_for()
    await expect(page.locator(f'#mine [data-id="{conv["id"]}"] .who')).to_have_text("Eva Weber")
    await console.open(conv["id"])
    await expect(page.get_by_label("Segment")).to_have_value("vip")
    await page.screenshot(path=shot("console-contact-edited.png"))
    assert watch.problems() == []
    await ctx.close()
