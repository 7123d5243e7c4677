"""The console's offer buttons in a real browser (issue 12): an offered conversation shows
under "Offered to you" with its countdown; Reject passes it to the next agent, whose
console shows it live; Accept makes it theirs and opens it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Browser, expect

from gateway.app import Gateway
from tests.gateway.conftest import Client, agent_token, base_config
from tests.webchat.conftest import Console, PageWatch, artifact, new_page


async def test_offer_buttons_reject_then_accept(
    gateway_factory: Callable[..., Awaitable[tuple[Gateway, Client]]],
    tmp_path: Path,
    browser: Browser,
    watch: PageWatch,
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["routing"]["queues"][0]["offers"] = {"timeout": "5m", "channel_kinds": ["api"]}
    gw, client = await gateway_factory(cfg)
    base = f"http://127.0.0.1:{gw.port}"
    alice_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    bob_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    alice = Console(await new_page(alice_ctx, watch))
    bob = Console(await new_page(bob_ctx, watch))
    await alice.sign_in(base, agent_token("alice"))
    await bob.sign_in(base, agent_token("bob"))
    await expect(alice.page.locator("#offers-box")).to_be_hidden()

    code, body = await client.inbound("b1", "Hello, anyone there?", from_={"name": "Dana"})
    assert code == 202
    conv_id = body["conversation_id"]
    offer = alice.page.locator(f'#offers li.offer[data-offer="{conv_id}"]')
    await expect(offer).to_be_visible()
    await expect(offer.locator(".who")).to_have_text("Dana")
    await expect(offer.locator(".expires")).to_contain_text("expires in")
    await expect(bob.page.locator("#offers-box")).to_be_hidden()
    await alice.page.screenshot(path=artifact("console-offer.png"))

    await offer.get_by_role("button", name="Reject").click()
    await expect(alice.page.locator("#status")).to_have_text("Offer rejected.")
    await expect(alice.page.locator("#offers-box")).to_be_hidden()
    bob_offer = bob.page.locator(f'#offers li.offer[data-offer="{conv_id}"]')
    await expect(bob_offer).to_be_visible()

    await bob_offer.get_by_role("button", name="Accept").click()
    await expect(bob.page.locator("#conv-meta")).to_contain_text("assigned to Bob")
    await expect(bob.page.locator(f'#mine [data-id="{conv_id}"]')).to_be_visible()
    await expect(bob.page.locator("#offers-box")).to_be_hidden()
    await expect(bob.message("Hello, anyone there?")).to_be_visible()
    await bob.page.screenshot(path=artifact("console-offer-accepted.png"))
    conv = await client.conversation(conv_id)
    assert conv["assignee"] == "bob"
    assert watch.problems() == []
    await alice_ctx.close()
    await bob_ctx.close()
