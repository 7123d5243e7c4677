"""Issue 9: what one mail may cost to read. Parsing happens in worker processes with a CPU
and a memory limit; a mail over them is quarantined (never left unseen to be read again
for ever) while the rest of its batch is stored; and the channel leaves no worker process
behind when it stops."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from email_support import (
    Dovecot,
    FakeCore,
    Mailbox,
    SmtpServer,
    email_config,
    make_mail,
    make_settings,
    many_parts_mail,
    seen,
)

from connectors.base import ConnectorContext
from connectors.email import EmailConnector
from connectors.email.imap import FetchedMessage
from tests.gateway.conftest import gateway_factory, wait_for
from tests.test_procpool import alive, children_running

__all__ = ["gateway_factory"]


async def test_a_mail_over_the_cpu_limit_is_quarantined_and_its_batch_goes_on(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["channels"][-1]["parse"] = {"workers": 2, "cpu_seconds": 0.5}
    _, client = await gateway_factory(cfg)
    before = await mailbox.append(make_mail("First question", sender="ann@customer.test"))
    # ~1 MB of 30,000 tiny parts: the standard library alone needs about 2 s of CPU
    costly = many_parts_mail(30_000)
    costly_uid = await mailbox.append(costly)
    after = await mailbox.append(make_mail("Second question", sender="bea@customer.test"))

    async def items() -> list[dict[str, Any]]:
        _, page = await client.call("GET", "/v1/quarantine?channel=mail")
        return list(page["items"])

    [item] = await wait_for(items, timeout=30)
    assert item["reason"] == "mail too costly to read: the parser used more than 0.5 s of CPU time"
    assert item["size"] == len(costly)
    # the others of the batch are stored, and every mail is acknowledged
    for who in ("ann", "bea"):
        await wait_for(lambda who=who: client.conversations_of(f"email:{who}@customer.test"), 15)
    await wait_for(lambda: seen(mailbox, before, costly_uid, after), 15)
    _, ready = await client.call("GET", "/readyz", token=None)
    assert ready["channels"]["mail"] == "degraded: 1 quarantined"

    # read again from quarantine: the same workers, the same limit
    status, body = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 422 and body["status"] == "new", body
    assert body["reason"] == (
        "retry failed: ValueError: mail too costly to read: "
        "the parser used more than 0.5 s of CPU time"
    )


async def test_stop_leaves_no_parser_process(
    dovecot: Dovecot, mailbox: Mailbox, core: FakeCore, ctx: ConnectorContext
) -> None:
    conn = EmailConnector(
        "support",
        make_settings(server=dovecot, mailbox=mailbox.name, parse={"workers": 2}),
        ctx,
    )
    for i in range(4):
        await mailbox.append(make_mail(f"question {i}", message_id=f"<{uuid.uuid4().hex}@x>"))
    await conn.start()
    try:
        await core.wait_for(4, timeout=30)
        workers = conn._parser.pool.pids
        assert workers and all(alive(p) for p in workers) and os.getpid() not in workers
    finally:
        await conn.stop()
    assert not any(alive(p) for p in workers)
    assert children_running("connectors.procpool") == []


async def test_mail_reaches_the_core_in_mailbox_order_whatever_parses_first(
    dovecot: Dovecot, mailbox: Mailbox, core: FakeCore, ctx: ConnectorContext
) -> None:
    # the first mail takes the parser about a second, the next ones a millisecond: with
    # two workers they are parsed side by side, but threading sees them in order
    await mailbox.append(many_parts_mail(15_000, sender="first@customer.test"))
    for i in range(3):
        await mailbox.append(make_mail(f"later {i}", sender="later@customer.test"))
    conn = EmailConnector(
        "support", make_settings(server=dovecot, mailbox=mailbox.name, parse={"workers": 2}), ctx
    )
    await conn.start()
    try:
        await core.wait_for(4, timeout=30)
    finally:
        await conn.stop()
    assert [m.subject for m in core.calls] == ["Many parts", "later 0", "later 1", "later 2"]


async def test_a_mail_cancelled_in_line_does_not_stop_the_one_before(
    core: FakeCore, ctx: ConnectorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at stop, a mail waiting for the one before it to be handed over is cancelled: the
    # one before still goes to the core
    conn = EmailConnector("support", make_settings(), ctx)
    slow = asyncio.Event()
    real = EmailConnector._parse

    async def parse(self: EmailConnector, raw: bytes) -> Any:
        if b"first" in raw:
            await slow.wait()
        return await real(self, raw)

    monkeypatch.setattr(EmailConnector, "_parse", parse)
    try:
        first = asyncio.create_task(conn._handle(FetchedMessage(1, make_mail("first"), ())))
        second = asyncio.create_task(conn._handle(FetchedMessage(2, make_mail("second"), ())))
        await wait_for(lambda: conn._parser.pool.pids, timeout=15)  # the second is parsed
        await asyncio.sleep(0.5)
        second.cancel()
        slow.set()
        assert await first is True
        assert core.subjects() == ["first"]
        assert second.cancelled()
    finally:
        await conn.stop()
