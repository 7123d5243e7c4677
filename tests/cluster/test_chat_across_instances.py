"""A chat visitor's widget (real Chromium) connected to instance B sees, live, the reply an
agent made on instance A: two `switchboard run` processes on one PostgreSQL and one Redis,
no sticky sessions."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from tests.cluster.cluster import Cluster, SlowReceiver, cluster_config, reply, until
from tests.cluster.servers import query
from tests.gateway.test_e2e_daemon import free_port
from tests.webchat.conftest import CHROMIUM, CHROMIUM_ARGS, PageWatch, Widget


@pytest.mark.timeout(240)
async def test_a_reply_made_on_one_instance_reaches_a_widget_on_another(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    receiver = SlowReceiver(delay=0.0)
    await receiver.start()
    ports = [free_port() for _ in range(2)]
    origins = [f"http://127.0.0.1:{p}" for p in ports]
    cluster = Cluster(
        tmp_path,
        [
            cluster_config(pg_dsn, redis_url, p, receiver.url, 2, {"default": 5}, origins)
            for p in ports
        ],
    )
    a, b = cluster.bases
    watch = PageWatch()
    try:
        await cluster.start()
        async with async_playwright() as pw, aiohttp.ClientSession() as http:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = watch.attach(await browser.new_page(viewport={"width": 1100, "height": 760}))
            await page.goto(b + "/")  # the visitor's page and socket are on instance B
            widget = Widget(page)
            await widget.open()
            await widget.skip_prechat()
            await widget.send("Is my order on its way?")
            await expect(widget.message("Is my order on its way?")).to_have_attribute(
                "data-state", "sent"
            )

            async def conversation() -> bool:
                return bool(await query(pg_dsn, "SELECT id FROM conversations"))

            await until(conversation, 20)
            conv = (await query(pg_dsn, "SELECT id FROM conversations"))[0]["id"]
            # The agent answers through instance A, which holds no socket of this visitor.
            await reply(http, a, conv, "Yes, it arrives tomorrow.")
            await expect(widget.message("Yes, it arrives tomorrow.", "out")).to_be_visible(
                timeout=15_000
            )
            await page.screenshot(path="/tmp/cluster-widget-across-instances.png")
            assert watch.problems() == []
            await browser.close()
        sent = await query(pg_dsn, "SELECT status FROM messages WHERE direction='out'")
        assert [r["status"] for r in sent] == ["sent"]
    finally:
        cluster.stop()
        await receiver.stop()
