"""Email through the whole gateway: Dovecot in, routed, agent reply out over SMTP,
threading by headers and token, loop safety, SMTP trouble, and the backfill command."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail, seen

from tests.gateway.conftest import agent_token, gateway_factory, wait_for

__all__ = ["gateway_factory"]

CUSTOMER = "dana@customer.test"


async def test_mail_in_reply_out_and_threading(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    first_id = f"<{uuid.uuid4().hex}@customer.test>"
    await mailbox.append(
        make_mail(
            "Refund for invoice 7",
            sender=f"Dana <{CUSTOMER}>",
            message_id=first_id,
            body="Please refund invoice 7.\n\nDana",
        )
    )
    convs = await wait_for(lambda: client.conversations_of(f"email:{CUSTOMER}"), timeout=15)
    conv = await wait_for(lambda: client.assigned(convs[0]["id"]))
    assert (
        conv["subject"] == "Refund for invoice 7"
        and conv["queue"] == "billing"
        and conv["assignee"] == "alice"
    )
    inbound = (await client.conversation(conv["id"]))["messages"][0]
    assert inbound["raw"] and (await client.call("GET", inbound["raw"]))[0] == 200

    status, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token("alice"),
        json={"text": "Done — refunded."},
    )
    assert status == 202
    await wait_for(lambda: smtp_server.received, timeout=10)
    sent = smtp_server.received[0].message
    assert sent["To"].addresses[0].addr_spec == CUSTOMER
    assert sent["In-Reply-To"] == first_id and first_id in sent["References"]
    assert "Refund for invoice 7" in sent["Subject"]
    reply_to = sent["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+") and reply_to.endswith("@example.com")
    our_id = sent["Message-ID"]

    # The customer answers our message: same conversation, even with another subject.
    await mailbox.append(
        make_mail(
            "thanks!",
            sender=CUSTOMER,
            headers={"In-Reply-To": our_id, "References": f"{first_id} {our_id}"},
        )
    )
    # A client that rewrites In-Reply-To still threads through References.
    await mailbox.append(
        make_mail(
            "one more thing",
            sender=CUSTOMER,
            headers={"In-Reply-To": "<rewritten@mua.test>", "References": f"{our_id}"},
        )
    )
    await wait_for(lambda: _count(client, conv["id"], 3), timeout=15)
    # Resolved, then a reply by token only (plus-address) within the window reopens it.
    await client.call("POST", f"/v1/conversations/{conv['id']}/resolve")
    await mailbox.append(make_mail("still broken", sender=CUSTOMER, to=reply_to))
    reopened = await wait_for(lambda: _count(client, conv["id"], 4), timeout=15)
    assert reopened["status"] in ("open", "assigned")
    assert len(await client.conversations_of(f"email:{CUSTOMER}")) == 1

    # Another customer forwarding our mail does not land in Dana's conversation.
    await mailbox.append(
        make_mail("Fwd: Refund", sender="eve@other.test", headers={"References": our_id})
    )
    eve = await wait_for(lambda: client.conversations_of("email:eve@other.test"), timeout=15)
    assert eve[0]["id"] != conv["id"]


async def _count(client: Any, conv_id: str, n: int) -> dict[str, Any] | None:
    conv = await client.conversation(conv_id)
    inbound = [m for m in conv["messages"] if m["direction"] == "in"]
    return conv if len(inbound) >= n else None


async def test_smtp_trouble_is_retried_and_delivered_once(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["outbox"]["max_attempts"] = 20
    _, client = await gateway_factory(cfg)
    await mailbox.append(make_mail("hello", sender=CUSTOMER))
    convs = await wait_for(lambda: client.conversations_of(f"email:{CUSTOMER}"), timeout=15)
    smtp_server.reply = "451 4.3.0 mailbox busy, try later"
    _, msg = await client.call(
        "POST",
        f"/v1/conversations/{convs[0]['id']}/messages",
        json={"text": "hi", "agent": "alice"},
    )
    # the relay said "try later", twice: the reply is still queued, not failed
    await wait_for(lambda: smtp_server.refused >= 2, timeout=10)
    assert await client.message_with_status(convs[0]["id"], msg["id"], "queued")
    smtp_server.reply = None
    await wait_for(
        lambda: client.message_with_status(convs[0]["id"], msg["id"], "sent"), timeout=10
    )
    # recorded as sent: no attempt follows, so this is every copy the customer gets
    assert len(smtp_server.received) == 1
    smtp_server.reply = "550 5.1.1 no such user"
    _, msg = await client.call(
        "POST",
        f"/v1/conversations/{convs[0]['id']}/messages",
        json={"text": "again", "agent": "alice"},
    )

    final = await wait_for(
        lambda: client.message_with_status(convs[0]["id"], msg["id"], "failed"), timeout=10
    )
    assert "550" in final["reason"] and "no such user" in final["reason"]


async def test_automated_mail_is_marked(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    await mailbox.append(
        make_mail(
            "Out of office", sender="ooo@customer.test", headers={"Auto-Submitted": "auto-replied"}
        )
    )
    convs = await wait_for(lambda: client.conversations_of("email:ooo@customer.test"), timeout=15)
    messages = (await client.conversation(convs[0]["id"]))["messages"]
    assert messages[0]["automated"] is True


async def test_backfill_command_is_idempotent(
    tmp_path: Path, dovecot: Dovecot, mailbox: Mailbox, smtp_server: SmtpServer
) -> None:
    for i in range(3):
        await mailbox.append(make_mail(f"old {i}", sender=f"old{i}@customer.test"), flags="\\Seen")
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(email_config(tmp_path, dovecot, mailbox, smtp_server)))
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "email",
        "backfill",
        "-c",
        str(config),
        "--channel",
        "mail",
        "--since",
        "2000-01-01",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "imported 3 new message(s)" in first.stderr and "3/3" in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "imported 0 new message(s)" in again.stderr
    bad = subprocess.run([*cmd[:-1], "yesterday"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "YYYY" not in bad.stdout and "--since" in bad.stderr


def bounce_for(message_id: str, recipient: str) -> bytes:
    """A delivery-status report (RFC 3464) for one of our messages, as an MTA sends it."""
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.customer.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"\r\n'
        "\r\n--BOUND\r\nContent-Type: text/plain\r\n\r\n"
        "Your message could not be delivered.\r\n"
        "\r\n--BOUND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "\r\n--BOUND\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nTo: {recipient}\r\nMessage-ID: {message_id}\r\n"
        "\r\n--BOUND--\r\n"
    ).encode()


async def test_bounce_marks_the_reply_failed(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    await mailbox.append(make_mail("where is my order", sender=CUSTOMER))
    convs = await wait_for(lambda: client.conversations_of(f"email:{CUSTOMER}"), timeout=15)
    _, msg = await client.call(
        "POST",
        f"/v1/conversations/{convs[0]['id']}/messages",
        json={"text": "on its way", "agent": "alice"},
    )
    await wait_for(lambda: smtp_server.received, timeout=10)
    sent_id = smtp_server.received[0].message["Message-ID"]
    await mailbox.append(bounce_for(sent_id, CUSTOMER))

    reply = await wait_for(
        lambda: client.message_with_status(convs[0]["id"], msg["id"], "failed"), timeout=15
    )
    assert "5.1.1" in reply["reason"]
    # The bounce is a receipt, not a customer message: nothing new in any conversation.
    conv = await client.conversation(convs[0]["id"])
    assert [m["direction"] for m in conv["messages"]] == ["in", "out"]


async def test_acknowledgements_respect_loop_safety_and_the_cap(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["conversations"] = {
        "reopen_window": 0,  # every mail after a resolve opens a new conversation
        "acknowledgement": {
            "text": "Thanks {name}, we got it (ref {reference}).",
            "max_per_contact": 2,
            "window": "1h",
            "channels": ["mail"],
        },
    }
    _, client = await gateway_factory(cfg)
    # A person gets an acknowledgement, marked as automatic so their robots stay quiet.
    await mailbox.append(make_mail("help please", sender=f"Dana <{CUSTOMER}>"))
    await wait_for(lambda: smtp_server.received, timeout=15)
    ack = smtp_server.received[0].message
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["To"].addresses[0].addr_spec == CUSTOMER
    assert ack.get_body(("plain",)).get_content().startswith("Thanks Dana, we got it (ref ")
    # Machines get none: an out-of-office, a bulk newsletter, a bounce.
    await mailbox.append(
        make_mail(
            "Out of office", sender="ooo@customer.test", headers={"Auto-Submitted": "auto-replied"}
        )
    )
    await mailbox.append(
        make_mail("Weekly deals", sender="news@shop.test", headers={"Precedence": "bulk"})
    )
    await mailbox.append(bounce_for("<unknown@mail.example.com>", "gone@customer.test"))
    await wait_for(lambda: client.conversations_of("email:news@shop.test"), timeout=15)
    await wait_for(lambda: client.conversations_of("email:ooo@customer.test"), timeout=15)
    # The cap: two acknowledgements per contact per hour, however many conversations.
    for i in range(3):
        convs = await client.conversations_of(f"email:{CUSTOMER}")
        await client.call("POST", f"/v1/conversations/{convs[0]['id']}/resolve")
        await mailbox.append(make_mail(f"another question {i}", sender=CUSTOMER))
        await wait_for(lambda i=i: _conversation_count(client, CUSTOMER, i + 2), timeout=15)
    # Every mail is flagged \\Seen only once its ingest returned, the decision about an
    # acknowledgement included; then every acknowledgement queued is let through.
    await wait_for(lambda: seen(mailbox), timeout=15)
    for machine in ("ooo@customer.test", "news@shop.test", "mailer-daemon@mx.customer.test"):
        assert await _outbound(client, machine) == [], machine
    acks = await wait_for(lambda: _settled_outbound(client, CUSTOMER), timeout=15)
    assert [m["status"] for m in acks] == ["sent", "sent"]
    recipients = [m.message["To"].addresses[0].addr_spec for m in smtp_server.received]
    assert recipients == [CUSTOMER, CUSTOMER]


async def _conversation_count(client: Any, email: str, n: int) -> bool:
    return len(await client.conversations_of(f"email:{email}")) >= n


async def _outbound(client: Any, email: str) -> list[dict[str, Any]]:
    """Every outbound message in the conversations of the contact with `email`."""
    out: list[dict[str, Any]] = []
    for conv in await client.conversations_of(f"email:{email}"):
        full = await client.conversation(conv["id"])
        out += [m for m in full["messages"] if m["direction"] == "out"]
    return out


async def _settled_outbound(client: Any, email: str) -> list[dict[str, Any]] | None:
    """The contact's outbound messages once none of them is still queued, else None."""
    out = await _outbound(client, email)
    return out if out and all(m["status"] != "queued" for m in out) else None
