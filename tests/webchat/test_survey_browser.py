"""A survey in the chat widget, in a real browser (Chromium): a visitor whose browser speaks
German gets the question in German with buttons under it, clicks one, leaves a comment;
the answer is recorded and the conversation stays resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Browser, expect

from tests.surveys.helpers import Clock, fire, resolve, surveys
from tests.webchat.conftest import (
    PageWatch,
    Widget,
    artifact,
    free_port,
    new_page,
    wait_for,
    webchat_config,
)


async def test_csat_buttons_and_comment_in_the_widget_in_german(
    gateway_factory: Any, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    clock = Clock()
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["surveys"] = {"delay": "10m"}
    gw, api = await gateway_factory(cfg, clock=clock)
    base = f"http://127.0.0.1:{port}"

    ctx = await browser.new_context(locale="de-DE", viewport={"width": 1000, "height": 760})
    page = await new_page(ctx, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("Hallo, mein Paket ist nicht angekommen")
    await expect(widget.message("Hallo, mein Paket")).to_have_attribute("data-state", "sent")
    convs = await wait_for(lambda: _conversations(api))
    conv = await wait_for(lambda: api.assigned(convs[0]["id"]))
    status, contact = await api.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200 and contact["attributes"]["browser_language"] == "de-DE"
    await resolve(api, conv["id"])
    await fire(gw, clock, 3600)

    question = widget.message("Wie zufrieden sind Sie mit der Hilfe", "out")
    await expect(question).to_be_visible(timeout=10_000)
    buttons = question.locator("button.choice")
    await expect(buttons).to_have_count(5)
    assert await buttons.all_text_contents() == ["1", "2", "3", "4", "5"]
    await page.screenshot(path=artifact("widget-survey-question.png"))

    await question.get_by_role("button", name="4", exact=True).click()
    await expect(question.locator(".survey-thanks")).to_have_text(
        "Vielen Dank für Ihre Rückmeldung!"
    )
    await expect(question.locator("button.choice[disabled]")).to_have_count(5)
    answered = await wait_for(lambda: _answered(api))
    assert (answered["score"], answered["language"]) == (4, "de")

    comment = question.get_by_label("Möchten Sie noch etwas ergänzen?")
    await comment.fill("Schnell und freundlich")
    await question.get_by_role("button", name="Senden").click()
    await expect(comment).to_be_disabled()
    await expect(question.locator("form .survey-thanks")).to_have_text(
        "Danke, Ihr Kommentar wurde gespeichert."
    )
    answered = await wait_for(lambda: _commented(api))
    assert answered["comment"] == "Schnell und freundlich"
    await page.screenshot(path=artifact("widget-survey-answered.png"))

    # Answered: the conversation was not reopened, no message was added to it.
    after = await api.conversation(conv["id"])
    assert after["status"] == "resolved"
    assert [m["text"] for m in after["messages"] if m["direction"] == "in"] == [
        "Hallo, mein Paket ist nicht angekommen"
    ]
    assert watch.problems() == []
    await ctx.close()


async def _conversations(api: Any) -> list[dict[str, Any]]:
    _, page = await api.call("GET", "/v1/conversations")
    return list(page["conversations"])


async def _answered(api: Any) -> dict[str, Any] | None:
    items = [s for s in await surveys(api) if s["score"] is not None]
    return items[0] if items else None


async def _commented(api: Any) -> dict[str, Any] | None:
    items = [s for s in await surveys(api) if s["comment"]]
    return items[0] if items else None


async def test_a_visitor_who_left_finds_the_buttons_on_return(
    gateway_factory: Any, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    """The chat was closed when the question went out: the next visit shows it with its
    buttons (from history); once answered, a reload shows the question without them."""
    clock = Clock()
    port = free_port()
    cfg = webchat_config(tmp_path / "db.sqlite", port)
    cfg["surveys"] = {"delay": "10m", "comment": False}
    gw, api = await gateway_factory(cfg, clock=clock)
    base = f"http://127.0.0.1:{port}"
    ctx = await browser.new_context(locale="en-GB")
    page = await new_page(ctx, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    await widget.skip_prechat()
    await widget.send("My coupon does not work")
    await expect(widget.message("My coupon")).to_have_attribute("data-state", "sent")
    convs = await wait_for(lambda: _conversations(api))
    conv = await wait_for(lambda: api.assigned(convs[0]["id"]))
    await page.close()  # the visitor leaves

    await resolve(api, conv["id"])
    await fire(gw, clock, 3600)
    await wait_for(lambda: surveys(api))

    page = await new_page(ctx, watch)
    await page.goto(base + "/")
    widget = Widget(page)
    await widget.open()
    question = widget.message("How satisfied are you", "out")
    await expect(question.locator("button.choice")).to_have_count(5)
    await question.get_by_role("button", name="2", exact=True).click()
    await expect(question.locator(".survey-thanks")).to_have_text("Thank you for your feedback!")
    await expect(question.locator("textarea")).to_have_count(0)  # comment: false
    answered = await wait_for(lambda: _answered(api))
    assert answered["score"] == 2
    await page.screenshot(path=artifact("widget-survey-from-history.png"))

    await page.reload()
    widget = Widget(page)
    await widget.open()
    await expect(widget.message("How satisfied are you", "out")).to_be_visible()
    await expect(page.locator("button.choice")).to_have_count(0)
    assert watch.problems() == []
    await ctx.close()
