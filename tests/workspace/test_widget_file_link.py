"""In a real browser: a file an agent sends reaches the chat widget as a download link the
visitor can click (the web chat carries no files), and a note sent meanwhile never shows."""

from __future__ import annotations

import aiohttp
from playwright.async_api import Browser, expect

from tests.gateway.conftest import agent_token
from tests.webchat.conftest import (  # noqa: F401 - fixtures for these tests
    Chat,
    PageWatch,
    Widget,
    browser,
    chat,
    fast_availability,
    make_chat,
    new_page,
    watch,
)

SHOT = "/tmp/wsnotes-widget-file-link.png"


async def test_the_visitor_gets_a_working_link_and_never_the_note(
    chat: Chat,  # noqa: F811
    browser: Browser,  # noqa: F811
    watch: PageWatch,  # noqa: F811
) -> None:
    ctx = await browser.new_context(viewport={"width": 1000, "height": 760})
    page = await new_page(ctx, watch)
    await page.goto(chat.base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("Could you send the invoice?")
    await expect(widget.message("Could you send the invoice?")).to_have_attribute(
        "data-state", "sent"
    )
    conv = await chat.assigned()
    token = agent_token(conv["assignee"])
    status, _ = await chat.api.call(
        "POST",
        f"/v1/conversations/{conv['id']}/notes",
        token=token,
        json={"text": "INTERNAL: customer asked twice"},
    )
    assert status == 201
    form = aiohttp.FormData()
    form.add_field("text", "Here is your invoice.")
    form.add_field(
        "file", b"%PDF-1.4 invoice", filename="invoice.pdf", content_type="application/pdf"
    )
    status, msg = await chat.api.call(
        "POST", f"/v1/conversations/{conv['id']}/messages", token=token, data=form
    )
    assert status == 202, msg

    reply = widget.message("Here is your invoice.", "out")
    await expect(reply).to_be_visible()
    link = reply.locator("a")
    await expect(link).to_have_count(1)
    href = await link.get_attribute("href")
    assert href and href.startswith(chat.base + "/files/")
    assert await link.get_attribute("rel") == "noopener noreferrer nofollow"
    # The visitor's browser downloads it with no token.
    answer = await page.request.get(href)
    assert answer.status == 200 and await answer.body() == b"%PDF-1.4 invoice"
    assert "INTERNAL" not in " ".join(await widget.texts())
    await page.screenshot(path=SHOT)
    assert watch.problems() == []
    await ctx.close()
