"""The agent console as a workspace (issue 14), in real Chromium: German and English,
390 px wide without horizontal overflow, agents by display name, keyboard shortcuts.
Screenshots go to a temporary directory, never into the repository."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect

from gateway.app import Gateway
from tests.gateway.conftest import Client, agent_token, base_config
from tests.webchat.conftest import (
    Console,
    PageWatch,
    console_gateway,
    new_page,
    routed_conversation,
    shot,
)

Factory = Callable[..., Awaitable[tuple[Gateway, Client]]]


async def _assigned_conversation(client: Client, text: str, name: str = "Dana Fox") -> str:
    return await routed_conversation(client, f"x-{text[:12]}", text, f"cust-{name.lower()}", name)


async def _context(
    browser: Browser, width: int = 1280, height: int = 800, **kw: Any
) -> BrowserContext:
    return await browser.new_context(
        viewport={"width": width, "height": height}, locale="en-US", **kw
    )


async def _no_overflow(page: Page) -> None:
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


async def test_german_after_switching_survives_a_reload(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, base_config(tmp_path / "db.sqlite"))
    conv_id = await _assigned_conversation(client, "Where is my parcel?")
    assignee = (await client.conversation(conv_id))["assignee"]
    ctx = await _context(browser, timezone_id="Europe/Berlin")
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token(assignee))
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await console.open(conv_id)
    await expect(page.locator("#resolve")).to_have_text("Resolve")

    await page.get_by_label("Language", exact=True).select_option("de")
    await expect(page.get_by_role("button", name="Abmelden")).to_be_visible()
    await expect(page.locator("#resolve")).to_have_text("Lösen")
    await expect(page.locator("#mine-title")).to_contain_text("Mir zugewiesen")
    await expect(page.locator("#conv-meta")).to_contain_text("zugewiesen an")
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await page.screenshot(path=shot("console-de.png"))

    await page.reload()
    await page.locator("#live.on").wait_for()
    await expect(page.get_by_role("button", name="Abmelden")).to_be_visible()
    await expect(page.locator("#mine-title")).to_contain_text("Mir zugewiesen")
    await expect(page.get_by_label("Sprache", exact=True)).to_have_value("de")
    # The message time is in German form in the agent's zone (Berlin is UTC+1 in winter).
    await console.open(conv_id)
    stamp = page.locator("#messages li.msg time").first
    iso = await stamp.get_attribute("datetime")
    assert iso is not None
    expected = await page.evaluate(
        "(iso) => new Intl.DateTimeFormat('de-DE', {hour: '2-digit', minute: '2-digit',"
        " timeZone: 'Europe/Berlin'}).format(new Date(iso))",
        iso,
    )
    await expect(stamp).to_have_text(expected)

    # Every word of the console exists in both languages.
    missing = await page.evaluate(
        """() => {
          const c = window.SwitchboardI18n.catalog;
          const en = Object.keys(c.en), de = Object.keys(c.de);
          return en.filter((k) => !de.includes(k)).concat(de.filter((k) => !en.includes(k)));
        }"""
    )
    assert missing == []

    # Back to English, also remembered.
    await page.get_by_label("Sprache", exact=True).select_option("en")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await page.reload()
    await page.locator("#live.on").wait_for()
    await expect(page.locator("#mine-title")).to_contain_text("Assigned to me")
    assert watch.problems() == []
    await ctx.close()


async def test_routing_reasons_in_the_agents_language(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(
        gateway_factory, base_config(tmp_path / "db.sqlite"), online=("alice",)
    )
    ctx = await _context(browser)
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token("alice"))
    await page.get_by_label("Language", exact=True).select_option("de")
    await expect(page.get_by_role("button", name="Abmelden")).to_be_visible()
    # Routed while the console is open: the reasons of the assignment arrive live.
    conv_id = await _assigned_conversation(client, "Frage zu meiner Rechnung (invoice)")
    await console.open(conv_id)
    await page.locator("#conv-routing summary").click()
    reasons = page.locator("#routing-reasons li")
    await expect(reasons.first).to_have_text("Regel 'billing' trifft zu: Text enthält 'invoice'")
    await expect(reasons.last).to_contain_text("alice gewählt nach skills; Skill-Wert 8")
    await expect(reasons).to_contain_text(["Priorität 'normal' aus der Voreinstellung"])
    await page.screenshot(path=shot("console-routing-de.png"))

    await page.get_by_label("Sprache", exact=True).select_option("en")
    await expect(reasons.first).to_have_text("rule 'billing' matched: text contains 'invoice'")
    await expect(reasons.last).to_contain_text("alice chosen by skills; skill score 8")

    # After a reload: the reasons the conversation keeps, in German again.
    await page.reload()
    await page.locator("#live.on").wait_for()
    await page.get_by_label("Language", exact=True).select_option("de")
    await console.open(conv_id)
    await page.locator("#conv-routing summary").click()
    await expect(reasons).to_have_text(
        [
            "Regel 'billing' trifft zu: Text enthält 'invoice'",
            "Priorität 'normal' aus der Voreinstellung",
        ]
    )
    await page.screenshot(path=shot("console-routing-de-reload.png"))
    assert watch.problems() == []
    await ctx.close()


async def test_a_german_browser_starts_in_german(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    _, base = await console_gateway(gateway_factory, base_config(tmp_path / "db.sqlite"))
    ctx = await browser.new_context(locale="de-DE")
    page = await new_page(ctx, watch)
    await page.goto(base + "/console")
    await expect(page.get_by_role("heading", name="Anmelden")).to_be_visible()
    await page.get_by_label("Agenten-Token").fill("not-a-token")
    await page.get_by_role("button", name="Anmelden").click()
    await expect(page.get_by_role("alert")).to_have_text("Dieses Token ist ungültig.")
    await page.screenshot(path=shot("console-de-signin.png"))
    assert watch.problems() == []
    await ctx.close()


async def test_390_px_wide_without_horizontal_overflow(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, base_config(tmp_path / "db.sqlite"))
    conv_id = await _assigned_conversation(
        client, "A rather long first message " + "with many words " * 20, name="Dana Fox"
    )
    assignee = (await client.conversation(conv_id))["assignee"]
    for lang in ("en", "de"):
        ctx = await _context(browser, 390, 844)
        page = await new_page(ctx, watch)
        console = Console(page)
        await console.sign_in(base, agent_token(assignee))
        if lang == "de":
            await page.locator("#lang").select_option("de")
        await _no_overflow(page)
        await page.screenshot(path=shot(f"console-390-list-{lang}.png"), full_page=True)

        # One pane at a time: the conversation replaces the list, with a way back.
        await console.open(conv_id)
        await expect(page.locator(".lists")).to_be_hidden()
        await expect(page.locator("#conv-title")).to_have_text("Dana Fox")
        await _no_overflow(page)
        await page.screenshot(path=shot(f"console-390-conv-{lang}.png"), full_page=True)

        await page.locator("#contact-btn").click()
        await expect(page.locator("#contact-panel")).to_be_visible()
        await expect(page.locator("#messages")).to_be_hidden()
        await expect(page.locator("#c-name")).to_have_value("Dana Fox")
        await _no_overflow(page)
        await page.screenshot(path=shot(f"console-390-contact-{lang}.png"), full_page=True)

        await page.locator("#contact-back").click()
        await page.locator("#back").click()
        await expect(page.locator(f'#mine [data-id="{conv_id}"]')).to_be_visible()
        await _no_overflow(page)
        await page.keyboard.press("?")
        await expect(page.locator("#help")).to_be_visible()
        await _no_overflow(page)
        await page.screenshot(path=shot(f"console-390-help-{lang}.png"))
        await ctx.close()
    assert watch.problems() == []


async def test_agents_by_display_name_also_after_a_reload(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, base_config(tmp_path / "db.sqlite"))
    conv_id = await _assigned_conversation(client, "Can you help me with my invoice?")
    conv = await client.conversation(conv_id)
    assignee = conv["assignee"]
    names = {"alice": "Alice", "bob": "Bob", "carol": "Carol"}
    ctx = await _context(browser)
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token(assignee))
    await console.open(conv_id)
    await console.reply("Of course, one moment.")
    reply = console.message("Of course, one moment.")
    await expect(reply.locator(".head strong")).to_have_text(names[assignee])
    await expect(page.locator("#conv-meta")).to_contain_text(f"assigned to {names[assignee]}")
    # The visitor by name, the routing reason, the tags.
    await expect(page.locator("#conv-title")).to_have_text("Dana Fox")
    await page.locator("#conv-routing summary").click()
    reasons = conv["routing"]["reasons"]
    assert reasons
    await expect(page.locator("#routing-reasons li").first).to_have_text(reasons[0])

    await page.reload()
    await page.locator("#live.on").wait_for()
    await console.open(conv_id)
    await expect(console.message("Of course, one moment.").locator(".head strong")).to_have_text(
        names[assignee]
    )
    await expect(page.locator("#conv-meta")).to_contain_text(f"assigned to {names[assignee]}")
    await page.screenshot(path=shot("console-names.png"))
    assert watch.problems() == []
    await ctx.close()


async def test_keyboard_shortcuts(
    gateway_factory: Factory, tmp_path: Path, browser: Browser, watch: PageWatch
) -> None:
    client, base = await console_gateway(gateway_factory, base_config(tmp_path / "db.sqlite"))
    first = await _assigned_conversation(client, "first customer", name="First")
    second = await _assigned_conversation(client, "second customer", name="Second")
    a1 = (await client.conversation(first))["assignee"]
    a2 = (await client.conversation(second))["assignee"]
    if a1 != a2:  # round robin: give both to one agent
        status, body = await client.call(
            "POST", f"/v1/conversations/{second}/assign", json={"agent": a1}
        )
        assert status == 200, body
    ctx = await _context(browser)
    page = await new_page(ctx, watch)
    console = Console(page)
    await console.sign_in(base, agent_token(a1))
    await expect(page.locator("#mine button.conv-item")).to_have_count(2)
    order = await page.locator("#mine button.conv-item").evaluate_all(
        "(items) => items.map((b) => b.dataset.id)"
    )
    await page.locator("body").click(position={"x": 5, "y": 400})
    await page.keyboard.press("j")
    await expect(page.locator("#conv-title")).to_have_text(
        "First" if order[0] == first else "Second"
    )
    await page.keyboard.press("Escape")  # out of the reply box? it has focus: Esc closes nothing
    await page.locator("#messages").focus()
    await page.keyboard.press("j")
    await expect(page.locator(f'#mine [data-id="{order[1]}"]')).to_have_attribute(
        "aria-current", "true"
    )
    await page.locator("#messages").focus()
    await page.keyboard.press("k")
    await expect(page.locator(f'#mine [data-id="{order[0]}"]')).to_have_attribute(
        "aria-current", "true"
    )
    await page.locator("#messages").focus()
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await expect(page.locator("#help-keys")).to_contain_text("resolve")
    await page.screenshot(path=shot("console-help.png"))
    await page.keyboard.press("Escape")
    await expect(page.locator("#help")).to_be_hidden()
    await page.locator("#messages").focus()
    await page.keyboard.press("r")
    await expect(page.get_by_label("Reply", exact=True)).to_be_focused()
    await page.locator("#messages").focus()
    await page.keyboard.press("e")
    await expect(page.locator("#conv-meta")).to_contain_text("resolved")
    await expect(page.locator(f'#mine [data-id="{order[0]}"]')).to_have_count(0)
    assert watch.problems() == []
    await ctx.close()
