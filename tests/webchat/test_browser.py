"""The widget and the console in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Browser, expect

from connectors.base import Attachment, Identity, InboundMessage
from connectors.ratelimit import LocalRateLimiter
from connectors.webchat import WebchatConnector
from gateway.ingest import ChannelInfo
from tests.gateway.conftest import ADMIN, agent_token, wait_for
from tests.webchat.conftest import (
    CHANNEL,
    Chat,
    Console,
    Outgoing,
    PageWatch,
    Widget,
    artifact,
    new_page,
)

XSS_IMG = '<img src=x onerror="window.__pwned=1">'
XSS_SCRIPT = "<script>window.__pwned=1</script>"


async def test_visitor_and_agent_talk_live(chat: Chat, browser: Browser, watch: PageWatch) -> None:
    visitor_ctx = await browser.new_context(viewport={"width": 1100, "height": 760})
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await new_page(visitor_ctx, watch)
    await page.goto(chat.base + "/")
    await expect(page.get_by_role("link", name="the agent console")).to_be_visible()
    widget = Widget(page)
    await widget.open()
    await expect(widget.page.locator("#sbw-title")).to_have_text("Test shop chat")
    await expect(widget.message("Hello from the test shop!")).to_be_visible()
    await widget.skip_prechat()
    await widget.send("Hi, where is my parcel?")
    await expect(widget.message("Hi, where is my parcel?")).to_have_attribute("data-state", "sent")

    conv = await chat.assigned()
    assignee = conv["assignee"]
    console_page = await new_page(agent_ctx, watch)
    console = Console(console_page)
    await console.sign_in(chat.base, agent_token(assignee))
    await expect(console_page.locator("#me")).to_contain_text(f"({assignee})")
    await console.open(conv["id"])
    await expect(console.message("Hi, where is my parcel?")).to_be_visible()
    await expect(console.message("Hi, where is my parcel?").locator(".channel")).to_have_text(
        "webchat"
    )

    # Typing both ways, live.
    await widget.input.press_sequentially("It was ord", delay=20)
    await expect(console_page.locator("#typing")).to_be_visible()
    await widget.input.fill("")
    await console_page.get_by_label("Reply", exact=True).press_sequentially("Let me ch", delay=20)
    await expect(widget.typing).to_be_visible()
    await expect(widget.typing).to_have_text("Agent is typing…")

    # The visitor writes again: the console shows it without a reload.
    await widget.send("Order 1234, sent last Monday")
    await expect(console.message("Order 1234, sent last Monday")).to_be_visible()

    # The agent replies: the visitor sees it without a reload, and the indicator goes.
    await console.reply("Found it: it arrives tomorrow.")
    await expect(widget.message("Found it: it arrives tomorrow.", "out")).to_be_visible()
    await expect(widget.typing).to_be_hidden()
    await expect(console.message("Found it: it arrives tomorrow.").locator(".state")).to_have_text(
        "sent"
    )
    await page.screenshot(path=artifact("widget-chat.png"))
    await console_page.screenshot(path=artifact("console-chat.png"))

    # Resolve from the console: the conversation leaves "Assigned to me".
    await console_page.get_by_role("button", name="Resolve").click()
    await expect(console_page.locator("#conv-meta")).to_contain_text("resolved")
    await expect(console_page.locator(f'#mine [data-id="{conv["id"]}"]')).to_have_count(0)
    assert watch.problems() == []
    await visitor_ctx.close()
    await agent_ctx.close()


async def test_reload_second_tab_and_network_drop(
    chat: Chat, browser: Browser, watch: PageWatch
) -> None:
    ctx = await browser.new_context()
    tab1 = await new_page(ctx, watch)
    await tab1.goto(chat.base + "/")
    w1 = Widget(tab1)
    await w1.open()
    await w1.skip_prechat()
    await w1.send("first message")
    await expect(w1.message("first message")).to_have_attribute("data-state", "sent")
    conv = await chat.assigned()
    status, _ = await chat.api.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": "an answer from the agent"},
    )
    assert status == 202
    await expect(w1.message("an answer from the agent", "out")).to_be_visible()

    # Reload: the same conversation, with its history.
    await tab1.reload()
    w1 = Widget(tab1)
    await w1.open()
    await expect(w1.message("first message", "in")).to_have_attribute("data-state", "sent")
    await expect(w1.message("an answer from the agent", "out")).to_be_visible()
    await expect(w1.page.locator("form.prechat")).to_be_hidden()

    # A second tab: the same history; what one tab sends the other shows.
    tab2 = await new_page(ctx, watch)
    await tab2.goto(chat.base + "/")
    w2 = Widget(tab2)
    await w2.open()
    await expect(w2.message("first message", "in")).to_be_visible()
    await expect(w2.message("an answer from the agent", "out")).to_be_visible()
    await w2.send("written in tab two")
    await expect(w1.message("written in tab two", "in")).to_be_visible()

    # The network drops; a message typed meanwhile waits, then is delivered exactly once.
    await ctx.set_offline(True)
    await expect(w1.page.locator(".conn")).to_have_text(
        "You are offline. Messages will be sent when you reconnect."
    )
    await w1.send("typed while offline")
    await expect(w1.message("typed while offline")).to_have_attribute("data-state", "sending")
    await tab1.wait_for_timeout(500)
    texts = [m["text"] for m in await chat.messages(conv["id"])]
    assert "typed while offline" not in texts
    await tab1.screenshot(path=artifact("widget-offline.png"))
    await ctx.set_offline(False)
    await expect(w1.message("typed while offline")).to_have_attribute(
        "data-state", "sent", timeout=10_000
    )
    await expect(w2.message("typed while offline")).to_have_count(1)

    # The gateway closes the socket: the widget reconnects and goes on.
    connector = chat.gw.connectors["webchat"]
    assert isinstance(connector, WebchatConnector)
    for group in list(connector._sockets.values()):
        for sock in list(group):
            await sock.ws.close(code=1011, message=b"test drop")
    await w1.send("after the server dropped us")
    await expect(w1.message("after the server dropped us")).to_have_attribute(
        "data-state", "sent", timeout=10_000
    )
    await expect(w2.message("after the server dropped us")).to_have_count(1, timeout=10_000)

    texts = [m["text"] for m in await chat.messages(conv["id"])]
    for text in (
        "first message",
        "written in tab two",
        "typed while offline",
        "after the server dropped us",
    ):
        assert texts.count(text) == 1, (text, texts)
    assert await w1.message("typed while offline").count() == 1
    assert watch.problems() == []
    await ctx.close()


async def test_markup_is_shown_as_text_on_both_sides(
    chat: Chat, browser: Browser, watch: PageWatch
) -> None:
    visitor_ctx = await browser.new_context()
    agent_ctx = await browser.new_context()
    page = await new_page(visitor_ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await page.locator("form.prechat input[name=name]").fill(XSS_IMG)
    await page.get_by_role("button", name="Start chat").click()
    await widget.send(XSS_IMG)
    await widget.send(XSS_SCRIPT)
    await expect(widget.message(XSS_SCRIPT)).to_have_attribute("data-state", "sent")
    conv = await chat.assigned()

    console_page = await new_page(agent_ctx, watch)
    console = Console(console_page)
    await console.sign_in(chat.base, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    await expect(console.message(XSS_IMG)).to_be_visible()
    await expect(console.message(XSS_SCRIPT)).to_be_visible()
    # The contact's name (from the pre-chat form) is markup too: shown literally.
    await expect(console_page.locator("#conv-title")).to_have_text(XSS_IMG)
    await console.reply(XSS_IMG + " and " + XSS_SCRIPT)
    await expect(widget.message(XSS_IMG + " and " + XSS_SCRIPT, "out")).to_be_visible()
    await expect(console.message(XSS_IMG + " and " + XSS_SCRIPT)).to_be_visible()

    for p in (page, console_page):
        assert await p.evaluate("window.__pwned") is None
        assert await p.locator("li.msg img").count() == 0
        assert await p.locator("li.msg script").count() == 0
    assert (await widget.message(XSS_IMG, "in").first.locator(".text").text_content()) == XSS_IMG
    await page.screenshot(path=artifact("widget-xss.png"))
    await console_page.screenshot(path=artifact("console-xss.png"))
    assert watch.problems() == []
    await visitor_ctx.close()
    await agent_ctx.close()


async def test_prechat_email_is_only_a_claim_until_the_mailed_code_proves_it(
    make_chat: Callable[..., Awaitable[Chat]],
    outgoing: Outgoing,
    browser: Browser,
    watch: PageWatch,
) -> None:
    chat = await make_chat(channels=[outgoing.channel()])
    email = "Dana.Smith@Example.com"
    status, body = await chat.api.call(
        "POST",
        "/v1/channels/api/messages",
        token="test-channel-token",
        json={
            "external_id": "crm-1",
            "text": "My invoice is wrong (sent through the API)",
            "from": {"email": email, "name": "Dana"},
        },
    )
    assert status == 202, body
    api_conv = body["conversation_id"]

    # A German browser: the widget and the code mail speak German.
    ctx = await browser.new_context(locale="de-DE")
    page = await new_page(ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await expect(page.locator("section.panel button.send")).to_have_text("Senden")
    await expect(widget.input).to_have_attribute("placeholder", "Nachricht schreiben…")
    await page.get_by_label("Name").fill("Dana Smith")
    await page.get_by_label("E-Mail").fill(email)
    await page.screenshot(path=artifact("widget-prechat.png"))
    await page.get_by_role("button", name="Chat starten").click()
    await widget.send("Following up on my invoice in the chat")
    await expect(widget.message("Following up on my invoice in the chat")).to_have_attribute(
        "data-state", "sent"
    )
    form = page.locator("form.verify")
    await expect(form).to_contain_text("Wir haben einen Code an dana.smith@example.com geschickt")
    # Typing an address reveals nothing of its owner, and joins nothing of theirs.
    assert "My invoice is wrong (sent through the API)" not in await widget.texts()
    assert [m["channel"] for m in await chat.messages(api_conv)] == ["api"]
    convs = await chat.conversations()
    [visitor_conv] = [c for c in convs if c["id"] != api_conv]

    # The agent sees a separate customer who claims the address, unverified.
    conv = await wait_for(lambda: _assigned(chat, visitor_conv["id"]), timeout=10)
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    console_page = await new_page(agent_ctx, watch)
    console = Console(console_page)
    await console.sign_in(chat.base, agent_token(str(conv["assignee"])))
    await console.open(visitor_conv["id"])
    await expect(console_page.locator("#conv-meta")).to_contain_text(
        "claims to be dana.smith@example.com (unverified)"
    )
    await expect(console.message("Following up on my invoice in the chat")).to_be_visible()
    await expect(console.message("My invoice is wrong (sent through the API)")).to_have_count(0)
    await console_page.screenshot(path=artifact("console-claimed-email.png"))

    await wait_for(lambda: outgoing.mails, timeout=10)
    [mail] = outgoing.mails
    assert mail.to == ["dana.smith@example.com"]
    assert mail.message["Subject"].startswith("Ihr Bestätigungscode")
    code = mail.code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    code_box = page.get_by_label("Bestätigungscode")
    await code_box.fill(wrong)
    await page.get_by_role("button", name="Bestätigen").click()
    await expect(form).to_contain_text("Der Code stimmt nicht (noch 4 Versuche).")
    await page.screenshot(path=artifact("widget-code-form.png"))
    await code_box.fill(code)
    await page.get_by_role("button", name="Bestätigen").click()
    await expect(form).to_contain_text("Danke: dana.smith@example.com ist bestätigt.")
    await page.screenshot(path=artifact("widget-email-confirmed.png"))
    status, body = await chat.api.call("GET", "/v1/contacts?identity=email:dana.smith@example.com")
    assert status == 200, body
    [contact] = body["contacts"]
    assert {i["kind"] for i in contact["identities"]} == {"email", "webchat"}
    assert contact["claims"] == []
    assert watch.problems() == []
    await ctx.close()
    await agent_ctx.close()


async def _assigned(chat: Chat, conversation_id: str) -> dict[str, object] | None:
    status, body = await chat.api.call("GET", f"/v1/conversations/{conversation_id}")
    assert status == 200
    return body if body["assignee"] else None


async def test_no_agent_online_banner(
    make_chat: Callable[..., Awaitable[Chat]], browser: Browser, watch: PageWatch
) -> None:
    chat = await make_chat()
    for agent in ("alice", "bob", "carol"):
        status, _ = await chat.api.call(
            "PUT", f"/v1/agents/{agent}/presence", json={"status": "offline"}, token=ADMIN
        )
        assert status == 200
    ctx = await browser.new_context()
    page = await new_page(ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await expect(widget.banner).to_be_visible()
    await expect(widget.banner).to_have_text(
        "No agent is online right now; leave a message and we'll reply here."
    )
    await widget.skip_prechat()
    await widget.send("Anyone there?")
    await expect(widget.message("Anyone there?")).to_have_attribute("data-state", "sent")
    await page.screenshot(path=artifact("widget-no-agent.png"))

    # Alice signs in to the console and goes online: the banner goes away by itself.
    agent_ctx = await browser.new_context()
    console_page = await new_page(agent_ctx, watch)
    await console_page.goto(chat.base + "/console")
    await console_page.get_by_label("Agent token").fill("not-a-token")
    await console_page.get_by_role("button", name="Sign in").click()
    await expect(console_page.get_by_role("alert")).to_have_text("That token is not valid.")
    await console_page.screenshot(path=artifact("console-signin.png"))
    console = Console(console_page)
    await console.sign_in(chat.base, agent_token("alice"))
    await expect(console_page.locator("#waiting button.conv-item")).to_have_count(1)
    await console_page.get_by_label("Presence").select_option("online")
    await expect(widget.banner).to_be_hidden()
    # Routing gives her the waiting conversation; it moves to "Assigned to me".
    await expect(console_page.locator("#mine button.conv-item")).to_have_count(1)
    await expect(console_page.locator("#waiting button.conv-item")).to_have_count(0)
    assert watch.problems() == []
    await ctx.close()
    await agent_ctx.close()


async def test_a_refused_message_shows_failed_with_retry(
    make_chat: Callable[..., Awaitable[Chat]], browser: Browser, watch: PageWatch
) -> None:
    chat = await make_chat(rate_per_minute=2)
    ctx = await browser.new_context()
    page = await new_page(ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    for text in ("one", "two", "three"):
        await widget.send(text)
    await expect(widget.message("two")).to_have_attribute("data-state", "sent")
    failed = widget.message("three")
    await expect(failed).to_have_attribute("data-state", "failed")
    await expect(failed.locator(".status")).to_contain_text(
        "Not sent: You are sending messages too fast"
    )
    await expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    await page.screenshot(path=artifact("widget-failed.png"))
    conv = (await chat.conversations())[0]
    assert [m["text"] for m in await chat.messages(conv["id"])] == ["one", "two"]
    # A minute later (the test forgets the window instead of waiting), Retry delivers it.
    connector = chat.gw.connectors["webchat"]
    assert isinstance(connector, WebchatConnector)
    limiter = connector._rates
    assert isinstance(limiter, LocalRateLimiter)
    limiter._windows.clear()
    await failed.get_by_role("button", name="Retry").click()
    await expect(failed).to_have_attribute("data-state", "sent")
    await expect(failed.get_by_role("button", name="Retry")).to_have_count(0)
    assert [m["text"] for m in await chat.messages(conv["id"])] == ["one", "two", "three"]
    assert watch.problems() == []
    await ctx.close()


BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ISOLATED = re.compile(r"^(isolate|plaintext|isolate-override)$")


async def test_customer_text_with_bidi_overrides_cannot_reverse_what_is_around_it(
    chat: Chat, browser: Browser, watch: PageWatch
) -> None:
    """A name with U+202E (RIGHT-TO-LEFT OVERRIDE) must not reverse the text next to it,
    and an attachment `U+202E fdp.exe` must not pass for `exe.pdf`."""
    evil = "\u202eevil"
    visitor_ctx = await browser.new_context()
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await new_page(visitor_ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await page.locator("form.prechat input[name=name]").fill(evil)
    await page.get_by_role("button", name="Start chat").click()
    await widget.send(evil + " wrote this")
    sent = widget.message(evil + " wrote this")
    await expect(sent).to_have_attribute("data-state", "sent")
    conv = await chat.assigned()

    console_page = await new_page(agent_ctx, watch)
    console = Console(console_page)
    await console.sign_in(chat.base, agent_token(conv["assignee"]))
    await console.open(conv["id"])
    # The customer sends a file whose name starts with the override (as a mail or a
    # Telegram document may carry it).
    _, contact = await chat.api.call("GET", f"/v1/contacts/{conv['contact_id']}")
    [visitor] = [i["address"] for i in contact["identities"] if i["kind"] == "webchat"]
    await chat.gw.ingestor.submit(
        ChannelInfo(CHANNEL, "webchat"),
        InboundMessage(
            "bidi-file-1",
            Identity("webchat", visitor),
            "see the file",
            attachments=[Attachment("\u202efdp.exe", "application/octet-stream", 2, b"MZ")],
        ),
    )
    link = console.message("see the file").locator(".attachments a")
    await expect(link).to_have_count(1)

    customer_text = [
        console_page.locator(f'#mine button.conv-item[data-id="{conv["id"]}"] .who'),
        console_page.locator("#conv-title"),
        console.message(evil + " wrote this").locator(".head strong"),
        console.message(evil + " wrote this").locator(".text"),
        link,
        sent.locator(".text"),
    ]
    for locator in customer_text:
        await expect(locator).to_have_css("unicode-bidi", ISOLATED)
    shown = await link.text_content() or ""
    assert shown == "fdp.exe" and not set(shown) & set(BIDI_CONTROLS)
    stored = await chat.api.conversation(conv["id"])
    [sent_file] = [m for m in stored["messages"] if m["attachments"]]
    assert [a["name"] for a in sent_file["attachments"]] == ["\u202efdp.exe"]  # kept
    await page.screenshot(path=artifact("widget-bidi.png"))
    await console_page.screenshot(path=artifact("console-bidi.png"))
    assert watch.problems() == []
    await visitor_ctx.close()
    await agent_ctx.close()
