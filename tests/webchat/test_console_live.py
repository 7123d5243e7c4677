"""The console live (issue 14) in real Chromium: who else views or types in a conversation,
opt-in browser notifications and the title badge for news, an attachment uploaded with a
reply."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.gateway.conftest import ADMIN, agent_token, base_config
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

# Headless Chromium shows no notifications: a stand-in records what the page asks for.
RECORD_NOTIFICATIONS = """
window.__notes = [];
class FakeNotification {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body || "" }); }
  close() {}
}
FakeNotification.permission = "default";
FakeNotification.requestPermission = async () => { FakeNotification.permission = "granted"; return "granted"; };
window.Notification = FakeNotification;
"""


async def test_who_else_is_viewing_and_typing(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(
        gateway_factory, base_config(tmp_path / "db.sqlite"), ("alice",)
    )
    conv_id = await routed_conversation(client, "v1", "Is anyone there?", "cust-v", "Vera")
    alice_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    admin_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    alice = Console(await new_page(alice_ctx, watch))
    admin = Console(await new_page(admin_ctx, watch))
    await alice.sign_in(base, agent_token("alice"))
    await admin.sign_in(base, ADMIN)
    await alice.open(conv_id)
    await expect(alice.page.locator("#viewers")).to_be_hidden()

    await admin.page.locator(f'#results [data-id="{conv_id}"]').click()
    await expect(admin.page.locator("#viewers")).to_have_text("Alice viewing")
    await expect(alice.page.locator("#viewers")).to_have_text("admin viewing")

    await alice.page.get_by_label("Reply", exact=True).press_sequentially("Let me lo", delay=20)
    await expect(admin.page.locator("#viewers")).to_have_text("Alice typing…")
    await admin.page.screenshot(path=shot("console-viewing.png"))

    # The admin leaves for another view: gone from Alice's console at once.
    await admin.page.close()
    await expect(alice.page.locator("#viewers")).to_be_hidden(timeout=10_000)
    assert watch.problems() == []
    await alice_ctx.close()
    await admin_ctx.close()


async def test_notifications_and_the_title_badge(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(
        gateway_factory, base_config(tmp_path / "db.sqlite"), ("alice",)
    )
    first = await routed_conversation(client, "n1", "First question", "cust-n1", "Nina")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    await ctx.add_init_script(RECORD_NOTIFICATIONS)
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await console.open(first)
    await expect(page).to_have_title("Switchboard")
    notify = page.get_by_role("button", name="Notifications off")
    await notify.click()
    await expect(page.locator("#notify")).to_have_text("Notifications on")
    await expect(page.locator("#notify")).to_have_attribute("aria-pressed", "true")

    # A new conversation for Alice: a notification, and a badge once the customer writes on.
    second = await routed_conversation(client, "n2", "Second question", "cust-n2", "Otto")
    await expect(page.locator(f'#mine [data-id="{second}"]')).to_be_visible()
    await page.wait_for_function(
        "() => window.__notes.some((n) => n.title === 'New conversation for you' && n.body === 'Otto')"
    )
    code, _ = await client.inbound("n3", "Hello? Still waiting", "cust-n2", from_={"name": "Otto"})
    assert code == 202
    await expect(page).to_have_title("(1) Switchboard")
    badge = page.locator(f'#mine [data-id="{second}"] .badge')
    await expect(badge).to_be_visible()
    notes = await page.evaluate("window.__notes")
    assert any(n["title"] == "New message from Otto" for n in notes), notes
    await page.screenshot(path=shot("console-badge.png"))

    # Opening it reads it: the badge and the title count go.
    await console.open(second)
    await expect(badge).to_have_count(0)
    await expect(page).to_have_title("Switchboard")

    # A note mentioning Alice on another conversation tells her; it is on that timeline.
    status, body = await client.call(
        "POST", f"/v1/conversations/{first}/notes", json={"text": "@alice please call Nina"}
    )
    assert status == 201, body
    await page.wait_for_function(
        "() => window.__notes.some((n) => n.title === 'admin mentioned you')"
    )
    await console.open(first)
    await expect(console.message("@alice please call Nina")).to_have_class("msg note")

    # Opted out: no more notifications.
    await page.locator("#notify").click()
    await expect(page.locator("#notify")).to_have_text("Notifications off")
    count = len(await page.evaluate("window.__notes"))
    status, body = await client.call("POST", f"/v1/conversations/{first}/resolve")
    assert status == 200, body  # room for one more (capacity)
    await routed_conversation(client, "n4", "Third question", "cust-n4", "Paul")
    await expect(page.locator("#mine button.conv-item")).to_have_count(2)
    await expect(page.locator("#mine")).to_contain_text("Paul")
    assert len(await page.evaluate("window.__notes")) == count
    assert watch.problems() == []
    await ctx.close()


async def test_an_attachment_uploaded_with_a_reply(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(
        gateway_factory, base_config(tmp_path / "db.sqlite"), ("alice",)
    )
    conv_id = await routed_conversation(client, "a1", "Can you send the invoice?", "cust-a", "Ada")
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await console.open(conv_id)
    await page.get_by_label("Attach files").set_input_files(
        {"name": "invoice-42.txt", "mimeType": "text/plain", "buffer": b"Invoice 42: 19.99 EUR"}
    )
    await expect(page.locator("#attach-names")).to_have_text("invoice-42.txt")
    await console.reply("Here is your invoice.")
    sent = console.message("Here is your invoice.")
    await expect(sent.locator(".attachments a")).to_have_text("invoice-42.txt")
    await expect(page.locator("#attach-names")).to_have_text("")
    conv = await client.conversation(conv_id)
    [out] = [m for m in conv["messages"] if m["direction"] == "out"]
    assert [a["name"] for a in out["attachments"]] == ["invoice-42.txt"]
    blob = out["attachments"][0]["url"]
    status, data = await client.call("GET", blob)
    assert status == 200
    assert data == "Invoice 42: 19.99 EUR"
    await page.screenshot(path=shot("console-attachment.png"))
    assert watch.problems() == []
    await ctx.close()
