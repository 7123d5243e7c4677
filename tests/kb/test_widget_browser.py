"""Article suggestions in the chat widget, in real Chromium: they appear while the visitor
types; "yes, that answered it" opens no conversation; "no" sends the message, and the
conversation carries the articles shown. Shown, clicked and answered are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from gateway.app import Gateway
from tests.gateway.conftest import (  # noqa: F401 - the fixture is used by name
    Client,
    agent_token,
    gateway_factory,
    wait_for,
)
from tests.webchat.conftest import (  # noqa: F401 - fixtures used by name
    CHANNEL,
    Console,
    PageWatch,
    Widget,
    browser,
    free_port,
    new_page,
    watch,
    webchat_config,
)

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"
SHOTS = Path("/tmp/kb-screens")


@pytest.fixture
async def site(
    gateway_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[tuple[Gateway, Client, str]]:
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["knowledge_base"] = {"path": str(DEMO_KB)}
    gw, client = await gateway_factory(cfg)
    yield gw, client, f"http://127.0.0.1:{port}"


async def kb_events(gw: Gateway) -> list[tuple[str, dict[str, Any]]]:
    events = await gw.store.events_since(0, 1000)
    return [(e.type, e.data) for e in events if e.type.startswith("kb.")]


async def webchat_conversations(client: Client) -> list[dict[str, Any]]:
    status, body = await client.call("GET", f"/v1/conversations?channel={CHANNEL}")
    assert status == 200, body
    return list(body["conversations"])


@pytest.mark.timeout(90)
async def test_suggestions_yes_opens_nothing_and_no_sends_with_the_articles(
    site: tuple[Gateway, Client, str],
    browser: Browser,  # noqa: F811
    watch: PageWatch,  # noqa: F811
) -> None:
    gw, client, base = site
    SHOTS.mkdir(exist_ok=True)

    # An English visitor: a typo still finds the password article while typing.
    ctx = await browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-GB")
    page = await new_page(ctx, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    box = page.locator("section.suggest")
    await widget.input.press_sequentially("pasword reset", delay=40)
    await expect(box).to_be_visible()
    first = box.locator("li").first
    await expect(first.locator("a")).to_have_text("Reset your password")
    await expect(first.locator("mark").first).to_have_text("password")
    await expect(box.locator(".ask")).to_have_text("Did this answer your question?")
    await page.screenshot(path=str(SHOTS / "suggestions-en.png"))

    # The visitor opens the article: the help page, in a new tab.
    async with ctx.expect_page() as opened:
        await first.locator("a").click()
    article = await opened.value
    await article.wait_for_load_state()
    assert article.url == base + "/help/en/password-reset"
    await expect(article.locator("article h1")).to_have_text("Reset your password")
    await article.screenshot(path=str(SHOTS / "help-article-en.png"))
    await article.close()

    # "Yes, thanks": nothing is sent, no conversation opens.
    await box.get_by_role("button", name="Yes, thanks").click()
    await expect(page.locator("p.glad")).to_be_visible()
    await expect(box).to_be_hidden()
    await expect(widget.input).to_have_value("")
    await page.screenshot(path=str(SHOTS / "suggestions-yes.png"))

    async def answered() -> list[tuple[str, dict[str, Any]]] | None:
        found = await kb_events(gw)
        return found if any(t == "kb.suggestion.answered" for t, _ in found) else None

    events = await wait_for(answered, timeout=5)
    kinds = [t for t, _ in events]
    assert kinds[0] == "kb.suggestion.shown"
    assert "kb.suggestion.clicked" in kinds
    answer = next(d for t, d in events if t == "kb.suggestion.answered")
    assert answer["helpful"] is True and answer["channel"] == CHANNEL
    assert answer["articles"][0]["slug"] == "password-reset"
    await asyncio.sleep(0.5)
    assert await webchat_conversations(client) == []
    assert await widget.texts() == ["Hello from the test shop!"]

    # A German visitor: a compound and an inflection find the refund article; "no" sends.
    de_ctx = await browser.new_context(viewport={"width": 1000, "height": 760}, locale="de-DE")
    de_page = await new_page(de_ctx, watch)
    await de_page.goto(base + "/")
    de_widget = Widget(de_page)
    await de_widget.open()
    await de_widget.skip_prechat()
    de_box = de_page.locator("section.suggest")
    await de_widget.input.press_sequentially("Ich habe die Rechnung doppelt bezahlt", delay=25)
    await expect(de_box.locator("li").first.locator("a")).to_have_text(
        "Rückerstattung bei doppelter Zahlung oder Rücksendung"
    )
    await expect(de_box.locator(".ask")).to_have_text("Hat das Ihre Frage beantwortet?")
    await de_page.screenshot(path=str(SHOTS / "suggestions-de.png"))
    shown = await de_box.locator("li").evaluate_all(
        "items => items.map(li => li.getAttribute('data-slug'))"
    )
    await de_box.get_by_role("button", name="Nein, Nachricht senden").click()
    await expect(de_widget.message("Ich habe die Rechnung doppelt bezahlt")).to_have_attribute(
        "data-state", "sent"
    )
    await expect(de_box).to_be_hidden()
    await de_page.screenshot(path=str(SHOTS / "suggestions-no.png"))

    (conv,) = await webchat_conversations(client)
    _, full = await client.call("GET", f"/v1/conversations/{conv['id']}")
    carried = full["messages"][0]["kb_suggestions"]
    assert [s["slug"] for s in carried] == shown and shown[0] == "rueckerstattung"
    assert {s["language"] for s in carried} == {"de"}
    events = await kb_events(gw)
    no = [d for t, d in events if t == "kb.suggestion.answered" and not d["helpful"]]
    assert [a["slug"] for a in no[0]["articles"]] == shown

    # The agent sees what the customer read before writing, linked to the help pages.
    agent_ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    console = Console(await new_page(agent_ctx, watch))

    async def assignee() -> str | None:
        _, now = await client.call("GET", f"/v1/conversations/{conv['id']}")
        return now["assignee"]  # type: ignore[no-any-return]

    await console.sign_in(base, agent_token(await wait_for(assignee, timeout=10)))
    await console.open(conv["id"])
    suggested = console.page.locator("li.msg .kb-suggested")
    await expect(suggested).to_contain_text("Read first (did not help):")
    link = suggested.locator("a").first
    await expect(link).to_have_text("Rückerstattung bei doppelter Zahlung oder Rücksendung")
    await expect(link).to_have_attribute("href", "/help/de/rueckerstattung")
    await console.page.screenshot(path=str(SHOTS / "console-kb-suggested.png"))
    await agent_ctx.close()

    # After the first message the widget stops suggesting (a conversation is open now).
    await de_widget.input.press_sequentially("Passwort vergessen", delay=25)
    await asyncio.sleep(0.8)
    await expect(de_box).to_be_hidden()
    assert watch.problems() == []
    await ctx.close()
    await de_ctx.close()
