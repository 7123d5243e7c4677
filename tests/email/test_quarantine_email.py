"""A mail the gateway cannot take is kept, acknowledged and re-submittable: it never stays
unseen in the mailbox to be retried for ever, and it is never lost.

Through the whole gateway and a private Dovecot. The parser bug is injected (a real parser
bug is, by definition, not known yet); everything around it is real."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from email_support import Dovecot, Mailbox, SmtpServer, make_mail

from connectors.email.connector import EmailConnector
from tests.email.test_email_gateway import email_config
from tests.gateway.conftest import ADMIN, gateway_factory, wait_for

__all__ = ["gateway_factory"]


async def test_unparseable_mail_is_quarantined_acknowledged_and_resubmitted(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = EmailConnector._parse

    async def choking(self: EmailConnector, raw: bytes) -> Any:
        if b"X-Trigger: parser-bug" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return await real(self, raw)

    monkeypatch.setattr(EmailConnector, "_parse", choking)
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    bad = make_mail(
        "Broken invoice",
        sender="Erin <erin@customer.test>",
        message_id=f"<{uuid.uuid4().hex}@customer.test>",
        headers={"X-Trigger": "parser-bug"},
    )
    bad_uid = await mailbox.append(bad)
    good_uid = await mailbox.append(make_mail("Where is my parcel?", sender="frank@customer.test"))

    async def quarantined() -> list[dict[str, Any]]:
        _, page = await client.call("GET", "/v1/quarantine?channel=mail")
        return list(page["items"])

    [item] = await wait_for(quarantined, timeout=15)
    assert item["status"] == "new" and item["content_type"] == "message/rfc822"
    assert item["reason"] == "unreadable mail: RecursionError: maximum recursion depth exceeded"
    # The mailbox moved on: both mails are acknowledged, the good one is stored.
    await wait_for(lambda: client.conversations_of("email:frank@customer.test"), timeout=10)

    async def seen() -> bool:
        flags = await mailbox.flags()
        return "\\Seen" in flags.get(bad_uid, set()) and "\\Seen" in flags.get(good_uid, set())

    await wait_for(seen, timeout=10)
    _, ready = await client.call("GET", "/readyz", token=None)
    assert ready["channels"]["mail"] == "degraded: 1 quarantined"

    async with client.http.get(
        f"{client.base}/v1/quarantine/{item['id']}/raw",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "message/rfc822"
        assert await resp.read() == bad  # exactly the bytes the server handed over

    monkeypatch.setattr(EmailConnector, "_parse", real)  # the fix is deployed
    status, retried = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 200 and retried["status"] == "retried"
    [conv] = await wait_for(lambda: client.conversations_of("email:erin@customer.test"))
    assert conv["subject"] == "Broken invoice"
    _, ready = await client.call("GET", "/readyz", token=None)
    assert ready["channels"]["mail"] == "running"
