"""Mail that real senders write, through the whole gateway and a private Dovecot: each one
becomes a stored message (automated mail a stored automated message), never a refusal."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from email_support import (
    ADDRESS,
    Dovecot,
    Mailbox,
    SmtpServer,
    corpus_file,
    dsn,
    email_config,
    make_mail,
    seen,
)

from connectors.email.parse import ParsedEmail, parse_email
from tests.gateway.conftest import gateway_factory, wait_for

__all__ = ["gateway_factory"]

CUSTOMER = "dana@customer.test"


async def start(
    gateway_factory: Any, tmp_path: Path, dovecot: Dovecot, mailbox: Mailbox, smtp: SmtpServer
) -> Any:
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp))
    return client


async def only_conversation(client: Any, identity: str) -> dict[str, Any]:
    """The single conversation of the contact holding `identity`, once it exists."""
    convs = await wait_for(lambda: client.conversations_of(identity), timeout=15)
    assert len(convs) == 1, convs
    return dict(await client.conversation(convs[0]["id"]))


async def test_a_sender_without_a_domain_is_a_contact(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    client = await start(gateway_factory, tmp_path, dovecot, mailbox, smtp_server)
    for sender, body in (("foo", "cron: backup failed"), ("MAILER-DAEMON", "queue is stuck")):
        await mailbox.append(
            f"From: {sender}\r\nTo: {ADDRESS}\r\nSubject: from {sender}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@host.local>\r\n\r\n{body}\r\n".encode()
        )
    foo = await only_conversation(client, "email:foo")
    assert [m["text"] for m in foo["messages"]] == ["cron: backup failed"]
    daemon = await only_conversation(client, "email:MAILER-DAEMON")  # found case-blind
    assert [m["text"] for m in daemon["messages"]] == ["queue is stuck"]
    _, found = await client.call("GET", "/v1/contacts", params={"identity": "email:foo"})
    (contact,) = found["contacts"]
    assert [(i["kind"], i["address"]) for i in contact["identities"]] == [("email", "foo")]
    # taken, so acknowledged in the mailbox: not offered again and again
    flags = await wait_for(lambda: seen(mailbox), timeout=10)
    assert len(flags) == 2


async def test_text_over_the_limit_is_stored_cut_and_marked_with_the_raw_kept(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    client = await start(gateway_factory, tmp_path, dovecot, mailbox, smtp_server)
    # a person's 123,000-character plain mail, and a real 1.2 MB list mail from the corpora
    long_body = ("All the log lines you asked for. " * 4000)[:123_000]
    plain = make_mail("the full log", sender=f"Dana <{CUSTOMER}>", body=long_body)
    await mailbox.append(plain)
    corpus_raw = corpus_file("nodemailer-mailparser", "large_text.eml").read_bytes()
    expected = parse_email(corpus_raw, max_attachment_bytes=10**7, our_address=ADDRESS)
    assert isinstance(expected, ParsedEmail) and expected.from_address
    assert len(expected.text) > 1_000_000
    await mailbox.append(corpus_raw)

    (dana,) = (await only_conversation(client, f"email:{CUSTOMER}"))["messages"]
    assert dana["truncated"] is True and dana["original_length"] == 123_000
    assert len(dana["text"]) == 100_000 and long_body.startswith(dana["text"])
    status, raw = await _download(client, dana["raw"])
    assert status == 200 and raw.replace(b"\r\n", b"\n") == plain.replace(b"\r\n", b"\n")

    (listmail,) = (await only_conversation(client, f"email:{expected.from_address}"))["messages"]
    assert listmail["automated"] is True  # a list mail, stored as such
    assert listmail["truncated"] is True
    assert listmail["original_length"] == len(expected.text)
    assert listmail["text"] == expected.text[:100_000]
    status, raw = await _download(client, listmail["raw"])
    # the whole message is kept (IMAP hands lines back with CRLF)
    assert status == 200 and raw.replace(b"\r\n", b"\n") == corpus_raw.replace(b"\r\n", b"\n")


async def _download(client: Any, path: str) -> tuple[int, bytes]:
    async with client.http.get(
        client.base + path, headers={"Authorization": "Bearer test-admin-token"}
    ) as resp:
        return resp.status, await resp.read()


async def test_raw_utf8_addresses_make_a_readable_contact(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    client = await start(gateway_factory, tmp_path, dovecot, mailbox, smtp_server)
    await mailbox.append(
        (
            "From: Jörg Müller <jörg@bücher.example>\r\n"
            f"To: 支援 <{ADDRESS}>\r\nCc: zoë@example.org\r\nSubject: Lieferung\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@bücher.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\nWo bleibt meine Bestellung?\r\n"
        ).encode()
    )
    conv = await only_conversation(client, "email:jörg@bücher.example")
    assert conv["messages"][0]["text"] == "Wo bleibt meine Bestellung?"
    status, contact = await client.call("GET", f"/v1/contacts/{conv['contact_id']}")
    assert status == 200 and contact["name"] == "Jörg Müller"


async def test_reports_that_fail_nothing_are_shown_and_only_failed_fails_the_reply(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    client = await start(gateway_factory, tmp_path, dovecot, mailbox, smtp_server)
    # a real bounce about a message this gateway never sent (Amazon SES, from the corpora)
    ses = corpus_file("nodemailer-mailparser", "delivery-status.eml").read_bytes()
    await mailbox.append(ses)
    ses_msgs = (await only_conversation(client, "email:MAILER-DAEMON@amazonses.com"))["messages"]
    assert [m["automated"] for m in ses_msgs] == [True]
    assert "suppression list" in ses_msgs[0]["text"]

    await mailbox.append(make_mail("where is my order", sender=CUSTOMER))
    conv = await only_conversation(client, f"email:{CUSTOMER}")
    _, reply = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        json={"text": "on its way", "agent": "alice"},
    )
    await wait_for(lambda: client.message_with_status(conv["id"], reply["id"], "sent"), timeout=10)
    sent_id = smtp_server.received[0].message["Message-ID"]

    # "delayed": the MTA is still trying. Shown to the agents, the reply stays sent.
    await mailbox.append(dsn(sent_id, (CUSTOMER, "delayed", "4.4.7")))
    delayed = await only_conversation(client, "email:mailer-daemon")
    assert [m["automated"] for m in delayed["messages"]] == [True]
    again = await client.conversation(conv["id"])
    assert [(m["direction"], m["status"]) for m in again["messages"]] == [
        ("in", None),
        ("out", "sent"),
    ]
    # "failed": now the reply is failed, with the reason; no new message anywhere
    await mailbox.append(dsn(sent_id, (CUSTOMER, "failed", "5.1.1")))
    failed = await wait_for(
        lambda: client.message_with_status(conv["id"], reply["id"], "failed"), timeout=15
    )
    assert failed["reason"].startswith("5.1.1")
    assert len((await only_conversation(client, "email:mailer-daemon"))["messages"]) == 1


async def test_a_message_id_reused_by_another_sender_is_not_dropped(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    client = await start(gateway_factory, tmp_path, dovecot, mailbox, smtp_server)
    shared = "<newsletter-template@mailer.example>"
    alice = make_mail("my order", sender="alice@customer.test", message_id=shared, body="A here")
    await mailbox.append(alice)
    await mailbox.append(
        make_mail("my order", sender="bob@other.test", message_id=shared, body="B here")
    )
    a = await only_conversation(client, "email:alice@customer.test")
    b = await only_conversation(client, "email:bob@other.test")
    assert [m["text"] for m in a["messages"]] == ["A here"]
    assert [m["text"] for m in b["messages"]] == ["B here"]
    # the same mail delivered again is still a redelivery: nothing new is stored. A later
    # mail of Alice's (answering her own, by Message-ID) shows the redelivery was passed.
    await mailbox.append(alice)
    await mailbox.append(
        make_mail("my order, again", sender="alice@customer.test", headers={"In-Reply-To": shared})
    )
    conv = await wait_for(lambda: _with_inbound(client, a["id"], 2), timeout=15)
    await wait_for(lambda: seen(mailbox), timeout=10)  # every submit has returned
    conv = await client.conversation(a["id"])
    assert [m["subject"] for m in conv["messages"]] == ["my order", "my order, again"]
    assert len(await client.conversations_of("email:bob@other.test")) == 1


async def _with_inbound(client: Any, conv_id: str, n: int) -> dict[str, Any] | None:
    conv = await client.conversation(conv_id)
    return conv if len([m for m in conv["messages"] if m["direction"] == "in"]) >= n else None
