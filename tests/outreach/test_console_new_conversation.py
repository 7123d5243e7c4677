"""The console's "New conversation" action in real Chromium (issue 15): an agent writes
first, the conversation opens assigned to it, and a channel that cannot write first is
explained in the agent's language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import Browser, expect

from tests.gateway.conftest import Receiver, agent_token, wait_for
from tests.webchat.conftest import (
    Chat,
    Console,
    PageWatch,
    artifact,
    browser,
    make_chat,
    new_page,
    receiver,
    watch,
)

__all__ = ["browser", "make_chat", "receiver", "watch"]


async def test_agent_starts_a_conversation_from_the_console(
    make_chat: Callable[..., Awaitable[Chat]],
    browser: Browser,
    watch: PageWatch,
    receiver: Receiver,
) -> None:
    chat = await make_chat(outbound_url=receiver.url)
    ctx = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(chat.base, agent_token("bob"))
    await page.get_by_role("button", name="New conversation").click()
    dialog = page.get_by_role("dialog", name="Start a conversation")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Channel").select_option("api")
    await dialog.locator("#nc-to").fill("crm-4711")
    await dialog.get_by_label("Name (optional)").fill("Frida")
    await dialog.get_by_label("Message").fill("Hello Frida, your contract renews next week.")
    await page.screenshot(path=artifact("console-new-conversation.png"))
    await dialog.get_by_role("button", name="Send").click()
    await expect(dialog).to_be_hidden()
    # The conversation opens, assigned to bob, with the message on its way out.
    await expect(console.message("Hello Frida, your contract renews next week.")).to_be_visible()
    status, page_ = await chat.api.call("GET", "/v1/conversations?channel=api")
    assert status == 200
    [conv] = page_["conversations"]
    assert conv["assignee"] == "bob"
    await wait_for(lambda: receiver.requests)

    # In German, a channel that cannot write first says why.
    await page.locator("#lang").select_option("de")
    await page.get_by_role("button", name="Neue Unterhaltung").click()
    dialog = page.get_by_role("dialog", name="Unterhaltung beginnen")
    await dialog.get_by_label("Kanal").select_option("webchat")
    await dialog.locator("#nc-to").fill("visitor-1")
    await dialog.get_by_label("Nachricht").fill("Hallo!")
    await dialog.get_by_role("button", name="Senden").click()
    await expect(dialog.get_by_role("alert")).to_have_text(
        "Über diesen Kanal kann man nicht zuerst schreiben: Der Kunde muss den Chat beginnen."
    )
    # Blanks pass the browser's `required` but are no address: the API's 422, in German.
    await dialog.locator("#nc-to").fill("   ")
    await dialog.get_by_role("button", name="Senden").click()
    await expect(dialog.get_by_role("alert")).to_have_text(
        "Bitte prüfen Sie die Felder: Adresse und Nachricht sind nötig."
    )
    await dialog.get_by_role("button", name="Abbrechen").click()
    await expect(dialog).to_be_hidden()
    assert watch.problems() == []
    await ctx.close()
