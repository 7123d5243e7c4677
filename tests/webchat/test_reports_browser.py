"""The reports page (/console/reports) in a real browser: who may see it, what it shows
for a known day, German and English."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from gateway.app import Gateway
from tests.gateway.conftest import CHANNEL, SECRET, Client, agent_token, base_config
from tests.webchat.conftest import PageWatch, artifact, free_port, new_page

SUPERVISOR = "test-supervisor-token"
PARTNER = "test-partner-channel-token"


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


async def seed(api: Client, clock: Clock, day: float) -> None:
    """Three conversations on `day` (epoch of some hour today, in the past):
    alice answers api/cust-1 in 90 s and resolves; bob answers partner/cust-2 in 30 min;
    api/cust-3 waits."""

    async def inbound(offset: float, ext: str, sender: str, token: str, channel: str) -> str:
        clock.at = day + offset
        status, body = await api.call(
            "POST",
            f"/v1/channels/{channel}/messages",
            token=token,
            json={"external_id": ext, "text": "Hello", "from": {"id": sender}},
        )
        assert status == 202, body
        return str(body["conversation_id"])

    async def act(offset: float, conv: str, action: str, **body: Any) -> None:
        clock.at = day + offset
        status, answer = await api.call("POST", f"/v1/conversations/{conv}/{action}", json=body)
        assert status in (200, 202), answer

    # In the order of time: the clock never runs backwards, as a wall clock does not (a
    # deadline pass that read `now` before a step back would fire a new conversation's
    # breach before its assignment).
    c1 = await inbound(0, "a1", "cust-1", CHANNEL, "api")
    await act(30, c1, "assign", agent="alice")
    c2 = await inbound(60, "b1", "cust-2", PARTNER, "partner")
    await act(90, c1, "messages", text="Hi!", agent="alice")
    await act(120, c2, "assign", agent="bob")
    await inbound(120, "c1", "cust-3", CHANNEL, "api")
    await act(600, c1, "resolve")
    await act(60 + 1800, c2, "messages", text="Hello", agent="bob")
    clock.at = day + 3600


async def test_the_reports_page_shows_the_days_figures_in_english_and_german(
    gateway_factory: Callable[..., Awaitable[tuple[Gateway, Client]]],
    browser: Browser,
    watch: PageWatch,
    tmp_path: Path,
) -> None:
    day = time.time() - 3 * 3600  # three hours ago: today for the browser (unless at midnight)
    clock = Clock(day)
    port = free_port()
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["port"] = port
    for agent in cfg["agents"]:
        agent["presence"] = "offline"
    # First response within 5 minutes: alice's 90 s met; bob's 30 min and cust-3's wait
    # breached: 1 of 3 met.
    cfg["routing"]["sla"] = {"policies": [{"name": "fast", "first_response": "5m"}]}
    cfg["auth"]["tokens"].append({"name": "Lea Lead", "role": "supervisor", "token": SUPERVISOR})
    cfg["channels"].append(
        {
            "name": "partner",
            "type": "api",
            "inbound_token": PARTNER,
            "outbound_url": "http://127.0.0.1:9/none",
            "allow_private_networks": True,
            "signing_secret": SECRET,
        }
    )
    _, api = await gateway_factory(cfg, clock=clock)
    await seed(api, clock, day)
    with sqlite3.connect(tmp_path / "db.sqlite") as db:  # two CSAT answers: 5 and 2 → 50 %
        conv, contact, queue = db.execute(
            "SELECT id, contact_id, queue FROM conversations ORDER BY created_at LIMIT 1"
        ).fetchone()
        db.executemany(
            "INSERT INTO survey_responses(id, conversation_id, contact_id, channel, kind, score,"
            " agent_id, queue, sent_at, answered_at, language, resolved_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,'en',?)",
            [
                ("s1", conv, contact, "api", "csat", 5, "alice", queue, day + 700, day + 800, day),
                (
                    "s2",
                    conv,
                    contact,
                    "partner",
                    "csat",
                    2,
                    "bob",
                    queue,
                    day + 2000,
                    day + 2100,
                    day,
                ),
            ],
        )
    base = f"http://127.0.0.1:{port}"

    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1500})
    page: Page = await new_page(context, watch)
    await page.goto(f"{base}/console/reports")
    # An agent's token is turned away; a supervisor's is taken.
    await page.get_by_label("Token").fill(agent_token("alice"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_have_text(
        "This page is for admin and supervisor tokens."
    )
    await page.get_by_label("Token").fill(SUPERVISOR)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#me")).to_have_text("Lea Lead")

    tiles = page.locator("#tiles")
    await expect(tiles.locator('[data-tile="t_conversations"] .value')).to_have_text("3")
    # First responses 90 s and 1,800 s: the median is their mean, 945 s = 15.8 min.
    await expect(tiles.locator('[data-tile="t_frt"] .value')).to_have_text("15.8 min")
    await expect(tiles.locator('[data-tile="t_csat"] .value')).to_have_text("50 %")
    await expect(tiles.locator('[data-tile="t_backlog"] .value')).to_have_text("2")
    await expect(tiles.locator('[data-tile="t_sla"] .value')).to_have_text("33.3 %")
    await expect(tiles.locator('[data-tile="t_breaches"] .value')).to_have_text("2")
    # No business hours: business time is calendar time.
    await expect(tiles.locator('[data-tile="t_frt_business"] .value')).to_have_text("15.8 min")
    alice = page.locator('#table-body tr[data-key="alice"]')
    await expect(alice.locator('[data-col="c_frt"]')).to_have_text("1.5 min")
    await expect(alice.locator('[data-col="c_fcr"]')).to_have_text("100 %")
    await expect(alice.locator('[data-col="c_resolved"]')).to_have_text("1")
    await expect(alice.locator('[data-col="c_csat"]')).to_have_text("100 %")
    await expect(alice.locator('[data-col="c_sla"]')).to_have_text("100 %")
    await expect(page.locator('#table-body tr[data-key="bob"] [data-col="c_sla"]')).to_have_text(
        "0 %"
    )
    await expect(page.locator('#table-body tr[data-key="bob"] [data-col="c_frt"]')).to_have_text(
        "30 min"
    )
    # Volume per channel: a bar of each channel today; SLA attainment lines; a CSAT line.
    await expect(page.locator('#chart-volume rect[data-channel="api"]')).to_have_count(1)
    await expect(page.locator('#chart-volume rect[data-channel="partner"]')).to_have_count(1)
    await expect(page.locator("#legend-volume")).to_contain_text("partner")
    await expect(page.locator('#chart-sla path[data-series="All targets"]')).to_have_count(1)
    await expect(page.locator('#chart-sla path[data-series="First response"]')).to_have_count(1)
    await expect(page.locator("#legend-sla")).to_contain_text("First response")
    await expect(page.locator('#chart-survey path[data-series="CSAT %"]')).to_have_count(1)
    await expect(page.locator('#chart-frt path[data-series="Median"]')).to_have_count(1)
    await page.screenshot(path=artifact("reports-en.png"), full_page=True)
    # The table's figures as CSV, downloaded from the page.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    text = Path(await download.path()).read_text()
    assert download.suggested_filename.endswith(".csv")
    assert text.splitlines()[0].startswith("agent,conversations,volume_in")
    assert any(line.startswith("alice,") for line in text.splitlines())

    # Grouped by queue instead: general holds all three.
    await page.get_by_label("Table by").select_option("queue")
    await expect(page.locator("#table-title")).to_have_text("Per queue")
    await expect(
        page.locator('#table-body tr[data-key="general"] [data-col="c_conversations"]')
    ).to_have_text("3")

    # German, switched on the page: texts and number formats.
    await page.get_by_label("Language").select_option("de")
    await expect(page.locator("h1 .sub")).to_have_text("Berichte")
    await expect(tiles.locator('[data-tile="t_frt"] .value')).to_have_text("15,8 min")
    await expect(tiles.locator('[data-tile="t_sla"] .value')).to_have_text("33,3 %")
    await expect(page.locator('#chart-sla path[data-series="Alle Ziele"]')).to_have_count(1)
    await expect(page.locator("#legend-sla")).to_contain_text("Erste Antwort")
    await page.get_by_label("Tabelle nach").select_option("agent")
    await expect(page.locator("#table-title")).to_have_text("Pro Agent")
    await expect(alice.locator('[data-col="c_frt"]')).to_have_text("1,5 min")
    await page.screenshot(path=artifact("reports-de.png"), full_page=True)
    await context.close()

    # A German browser gets German from the start.
    context = await browser.new_context(locale="de-DE")
    page = await new_page(context, watch)
    await page.goto(f"{base}/console/reports")
    await expect(page.get_by_role("button", name="Anmelden")).to_be_visible()
    await context.close()
    assert watch.problems() == []
