"""A mail whose body holds a NUL (U+0000) is stored without it and acknowledged, on both
stores; it neither stays unseen and retried forever (PostgreSQL refused the NUL) nor holds
up the mail after it."""

from __future__ import annotations

import uuid
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail, seen

from tests.gateway.conftest import gateway_factory, wait_for

__all__ = ["gateway_factory"]


def nul_mail() -> bytes:
    """A mail with a NUL in its body, encoded (base64) so that it reaches the parser:
    Dovecot turns a raw NUL byte into 0x80."""
    msg = EmailMessage()
    msg["From"] = "nul@customer.test"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Parcel"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@customer.test>"
    msg.set_content("my order\x00 did not arrive", cte="base64")
    return msg.as_bytes(policy=policy.SMTP)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"path": str(tmp_path / "db.sqlite")}
    return {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}


async def test_a_mail_with_a_nul_is_stored_without_it_and_the_next_flows(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
    store: dict[str, Any],
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["store"] = store
    _, client = await gateway_factory(cfg)
    first = await mailbox.append(nul_mail())
    later = await mailbox.append(make_mail("Still waiting", sender="nul@customer.test"))
    await wait_for(lambda: seen(mailbox, first, later), timeout=30)

    convs = await wait_for(lambda: client.conversations_of("email:nul@customer.test"))
    messages = (await client.conversation(convs[0]["id"]))["messages"]
    texts = [m["text"].strip() for m in messages]
    assert texts == ["my order did not arrive", "Hello, my order did not arrive."], texts
    status, page = await client.call("GET", "/v1/quarantine")
    assert status == 200 and page["items"] == [], page
