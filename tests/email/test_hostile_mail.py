"""Issue 9: one mail must not freeze the daemon. Mail that is cheap to send and costly to
read (50,000 Cc addresses; HTML nested 50,000 deep) is read off the event loop, capped,
and stored or quarantined; meanwhile the gateway keeps answering and other mail flows.

Through the whole gateway and a private Dovecot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from email_support import (
    Dovecot,
    Mailbox,
    SmtpServer,
    deep_html_mail,
    email_config,
    make_mail,
    many_cc_mail,
    seen,
)

from tests.gateway.conftest import gateway_factory, wait_for
from tests.looplag import LoopLag

__all__ = ["gateway_factory"]

# The bound for the longest event-loop stall while such mail is read.
MAX_STALL = 0.100


class HealthProbe:
    """GET /healthz every 50 ms; every answer and its latency."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                started = time.perf_counter()
                try:
                    async with http.get(f"{self.base}/healthz") as resp:
                        await resp.read()
                        if resp.status != 200:
                            self.failures.append(f"status {resp.status}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def quarantined(client: Any) -> dict[str, dict[str, Any]]:
    """The channel's quarantined items by id."""
    _, page = await client.call("GET", "/v1/quarantine?channel=mail")
    return {item["id"]: item for item in page["items"]}


async def test_costly_mail_neither_freezes_the_gateway_nor_stays_unread(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    gw, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    probe = HealthProbe(f"http://127.0.0.1:{gw.port}")
    cc_mail, deep_mail = many_cc_mail(50_000), deep_html_mail(50_000)
    normal = make_mail("Where is my parcel?", sender="Frank <frank@customer.test>")
    async with LoopLag() as lag:
        probe.start()
        try:
            cc_uid = await mailbox.append(cc_mail)
            deep_uid = await mailbox.append(deep_mail)
            normal_uid = await mailbox.append(normal)
            # the normal mail is stored, and every mail ends acknowledged (never left
            # unseen to be read again for ever)
            await wait_for(lambda: client.conversations_of("email:frank@customer.test"), 60)
            await wait_for(lambda: seen(mailbox, cc_uid, deep_uid, normal_uid), 60, 0.2)
        finally:
            await probe.stop()
    print(
        f"\nloop: {lag}; /healthz: {len(probe.latencies)} probes, "
        f"slowest {max(probe.latencies) * 1000:.1f} ms"
    )
    assert lag.max < MAX_STALL, f"the event loop stalled: {lag}"
    assert not probe.failures and max(probe.latencies) < 1.0, probe.failures

    # Each hostile mail is stored, capped with sensible text, or kept in quarantine.
    kept = await quarantined(client)
    cc = await client.conversations_of("email:eve@customer.test")
    if cc:
        (msg,) = (await client.conversation(cc[0]["id"]))["messages"]
        assert msg["text"] == "Please forward this to everyone."
        # the first 1,000 addresses are kept, and how many there were
        (stored,) = await gw.store.messages(cc[0]["id"])
        assert stored.metadata["address_counts"] == {"cc": 50_000}
        assert stored.metadata["cc"][:2] == ["user0@example0.test", "user1@example1.test"]
        assert len(stored.metadata["cc"]) == 1000
    deep = await client.conversations_of("email:deb@customer.test")
    if deep:
        (msg,) = (await client.conversation(deep[0]["id"]))["messages"]
        assert "Hello, my invoice is wrong." in msg["text"] and "deep down" in msg["text"]
    assert len(kept) + bool(cc) + bool(deep) == 2, kept
