"""Proactive outreach by email through the whole gateway: the first mail leaves over SMTP
(aiosmtpd) with our Message-ID and thread token, and the customer's answer (Dovecot, by
In-Reply-To) joins the conversation — on both stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.email.email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail
from tests.gateway.conftest import agent_token, wait_for

CUSTOMER = "erin@customer.test"


async def test_first_mail_out_and_the_answer_threads_in(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
    store_cfg: Any,
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    if store_cfg is not None:
        cfg["store"] = store_cfg
    _, client = await gateway_factory(cfg)
    status, err = await client.call(
        "POST",
        "/v1/conversations",
        token=agent_token("alice"),
        json={"channel": "mail", "to": {"address": CUSTOMER}, "text": "Hello"},
    )
    assert (status, err["error"]["code"]) == (422, "subject_required"), err
    for wrong in ("Erin <erin@customer.test>", "erin", "erin@customer"):
        status, err = await client.call(
            "POST",
            "/v1/conversations",
            token=agent_token("alice"),
            json={"channel": "mail", "to": {"address": wrong}, "subject": "Hi", "text": "Hello"},
        )
        assert (status, err["error"]["code"]) == (422, "invalid_address"), (wrong, err)

    status, conv = await client.call(
        "POST",
        "/v1/conversations",
        token=agent_token("alice"),
        json={
            "channel": "mail",
            "to": {"address": "Erin@Customer.test", "name": "Erin"},
            "subject": "Your warranty ends next month",
            "text": "Hello Erin,\n\nyour warranty ends on 1 January. Shall we extend it?",
        },
    )
    assert status == 201, conv
    assert conv["assignee"] == "alice" and conv["subject"] == "Your warranty ends next month"
    await wait_for(lambda: smtp_server.received, timeout=10)
    sent = smtp_server.received[0].message
    assert sent["To"].addresses[0].addr_spec == CUSTOMER
    # The subject carries the conversation's token, as every reply's does.
    assert sent["Subject"].startswith("Your warranty ends next month [#")
    assert "In-Reply-To" not in sent  # it answers nothing: it starts the thread
    assert "your warranty ends on 1 January" in sent.get_body(("plain",)).get_content()
    our_id = sent["Message-ID"]
    first = conv["messages"][0]
    done = await wait_for(lambda: _status(client, conv["id"], first["id"], "sent"), timeout=10)
    assert done["provider_message_id"] == our_id

    # The customer answers from their mail program: In-Reply-To our Message-ID.
    await mailbox.append(
        make_mail(
            "Re: Your warranty ends next month",
            sender=f"Erin <{CUSTOMER}>",
            body="Yes please, extend it.",
            headers={"In-Reply-To": our_id, "References": our_id},
        )
    )
    joined = await wait_for(lambda: _count(client, conv["id"], 2), timeout=15)
    assert joined["messages"][1]["direction"] == "in"
    assert "Yes please" in joined["messages"][1]["text"]
    assert joined["assignee"] == "alice"
    assert [c["id"] for c in await client.conversations_of(f"email:{CUSTOMER}")] == [conv["id"]]


async def _status(client: Any, conv_id: str, msg_id: str, status: str) -> Any:
    return await client.message_with_status(conv_id, msg_id, status)


async def _count(client: Any, conv_id: str, n: int) -> dict[str, Any] | None:
    conv: dict[str, Any] = await client.conversation(conv_id)
    return conv if len(conv["messages"]) >= n else None
