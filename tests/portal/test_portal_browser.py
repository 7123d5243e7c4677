"""The customer portal in a real browser (Chromium): a customer who wrote through the API
channel and then in the web chat (one contact, merged) opens "See my requests" in the
widget, sees both requests with their channel and status, answers in the portal, and the
agent gets the answer; in English and in German."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, expect

from tests.gateway.conftest import Client, agent_token
from tests.webchat.conftest import (
    CHANNEL,
    Console,
    PageWatch,
    Widget,
    artifact,
    free_port,
    new_page,
    wait_for,
    webchat_config,
)


async def _inbound_texts(api: Client, conv_id: str) -> list[str]:
    conv = await api.conversation(conv_id)
    return [m["text"] for m in conv["messages"] if m["direction"] == "in"]


async def _webchat_conversation(api: Client) -> dict[str, Any] | None:
    _, body = await api.call("GET", f"/v1/conversations?channel={CHANNEL}")
    convs = body["conversations"]
    return convs[0] if convs else None


async def test_portal_from_the_widget_shows_both_channels_and_takes_an_answer(
    gateway_factory: Any, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["portal"] = {"enabled": True}
    gw, api = await gateway_factory(cfg)
    base = f"http://127.0.0.1:{port}"

    # An earlier request through the API channel (a web form, say), already resolved.
    status, body = await api.inbound("form-1", "Invoice 77 is charged twice", sender="cust-9")
    assert status in (200, 201, 202), body
    form_conv = body["conversation_id"]
    status, _ = await api.call("POST", f"/v1/conversations/{form_conv}/resolve")
    assert status == 200

    ctx = await browser.new_context(locale="en-GB", viewport={"width": 1000, "height": 800})
    page = await new_page(ctx, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    portal_link = page.locator("a.portal")
    await expect(portal_link).to_be_hidden()  # no contact yet: nothing to show
    await widget.send("Where is my order 1234?")
    await expect(widget.message("Where is my order")).to_have_attribute("data-state", "sent")
    chat_conv = await wait_for(lambda: _webchat_conversation(api))
    # The agent learns both are the same customer and merges them.
    form_contact = (await api.conversation(form_conv))["contact_id"]
    status, merged = await api.call(
        "POST", f"/v1/contacts/{chat_conv['contact_id']}/merge", json={"other": form_contact}
    )
    assert status == 200, merged

    await expect(portal_link).to_have_text("See my requests")
    await page.screenshot(path=artifact("widget-portal-link.png"))
    async with ctx.expect_page() as opened:
        await portal_link.click()
    portal = watch.attach(await opened.value)
    await portal.wait_for_load_state()
    await expect(portal.locator("h1")).to_have_text("Your requests")
    chat = portal.locator(f"#c-{chat_conv['id']}")
    form = portal.locator(f"#c-{form_conv}")
    await expect(chat.locator(".channel")).to_have_text("Website chat")
    await expect(chat.locator(".status")).to_have_text("Open")
    await expect(chat.locator(".transcript")).to_contain_text("Where is my order 1234?")
    await expect(form.locator(".channel")).to_have_text("Online")
    await expect(form.locator(".status")).to_have_text("Resolved")
    await expect(form.locator(".transcript")).to_contain_text("Invoice 77 is charged twice")
    # One active request: the resolved one says where to write instead.
    await expect(form.locator("textarea")).to_have_count(0)
    await expect(form).to_contain_text("please answer in your open request")
    await portal.screenshot(path=artifact("portal-en.png"), full_page=True)

    await chat.locator("textarea").fill("It was due yesterday, order 1234.")
    await chat.get_by_role("button", name="Send answer").click()
    await expect(portal.locator(f"#c-{chat_conv['id']} .notice")).to_have_text(
        "Thank you, your answer has been added to this request."
    )
    await expect(portal.locator(f"#c-{chat_conv['id']} .transcript")).to_contain_text(
        "It was due yesterday"
    )
    # The agent has it, in the chat conversation, as the customer's message.
    assert "It was due yesterday, order 1234." in await wait_for(
        lambda: _inbound_texts(api, chat_conv["id"])
    )
    # The agent's answer goes out on the conversation's channel: the visitor's widget.
    status, _ = await api.call(
        "POST", f"/v1/conversations/{chat_conv['id']}/messages", json={"text": "On its way!"}
    )
    assert status == 202
    await expect(widget.message("On its way!", "out")).to_be_visible(timeout=10_000)

    # In German: the same link in a German browser.
    de = await browser.new_context(locale="de-DE", viewport={"width": 1000, "height": 800})
    german = await new_page(de, watch)
    await german.goto(portal.url.split("?", 1)[0])
    await expect(german.locator("h1")).to_have_text("Ihre Anfragen")
    chat_de = german.locator(f"#c-{chat_conv['id']}")
    await expect(chat_de.locator(".channel")).to_have_text("Website-Chat")
    await expect(chat_de.locator(".status")).to_have_text("Wartet auf Ihre Antwort")
    await expect(german.locator(f"#c-{form_conv} .status")).to_have_text("Erledigt")
    await chat_de.locator("textarea").fill("Danke, ich warte gern.")
    await chat_de.get_by_role("button", name="Antwort senden").click()
    await expect(german.locator(f"#c-{chat_conv['id']} .notice")).to_have_text(
        "Danke, Ihre Antwort wurde zu dieser Anfrage hinzugefügt."
    )
    await german.screenshot(path=artifact("portal-de.png"), full_page=True)
    assert "Danke, ich warte gern." in await wait_for(lambda: _inbound_texts(api, chat_conv["id"]))
    # Internal notes never reach the customer.
    status, _ = await api.call(
        "POST", f"/v1/conversations/{chat_conv['id']}/notes", json={"text": "VIP, be quick"}
    )
    assert status == 201
    await german.reload()
    await expect(german.locator("body")).not_to_contain_text("VIP, be quick")
    assert watch.problems() == []
    await ctx.close()
    await de.close()
    assert gw.portal is not None


async def test_an_agent_sends_the_portal_link_from_the_console(
    gateway_factory: Any, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["portal"] = {"enabled": True}
    _, api = await gateway_factory(cfg)
    base = f"http://127.0.0.1:{port}"

    visitor = await browser.new_context(locale="en-US", viewport={"width": 1000, "height": 760})
    page = await new_page(visitor, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("Can I see my earlier requests?")
    await expect(widget.message("Can I see my earlier")).to_have_attribute("data-state", "sent")

    async def assigned() -> dict[str, Any] | None:
        conv = await _webchat_conversation(api)
        return conv if conv and conv["assignee"] else None

    conv = await wait_for(assigned, timeout=10)
    agent = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    console = Console(await new_page(agent, watch))
    await console.sign_in(base, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    await console.page.get_by_role("button", name="Send portal link").click()
    await expect(console.page.locator("#status")).to_contain_text("Portal link sent.")

    # The visitor gets it in the widget, in its own language, as a link it can follow.
    sent = widget.message("You can see all your requests with us", "out")
    await expect(sent).to_be_visible(timeout=10_000)
    await page.screenshot(path=artifact("widget-portal-message.png"))
    async with visitor.expect_page() as opened:
        await sent.locator("a").click()
    portal = await opened.value
    await portal.wait_for_load_state()
    await expect(portal.locator("h1")).to_have_text("Your requests")
    await expect(portal.locator(f"#c-{conv['id']} .transcript")).to_contain_text(
        "Can I see my earlier requests?"
    )
    # The answer from the portal appears live in the agent's console, marked as such.
    await portal.locator(f"#c-{conv['id']} textarea").fill("Thanks, found them all.")
    await portal.get_by_role("button", name="Send answer").click()
    answer = console.message("Thanks, found them all.")
    await expect(answer).to_be_visible(timeout=10_000)
    await expect(answer.locator(".via")).to_have_text("via the customer portal")
    await console.page.screenshot(path=artifact("console-portal-answer.png"))
    assert watch.problems() == []
    await visitor.close()
    await agent.close()
