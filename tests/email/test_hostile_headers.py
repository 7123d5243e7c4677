"""A customer's mail or an API reply cannot put headers of its own on our SMTP reply:
CR, LF, NUL and other control characters are removed after every decoding step (an RFC
2047 encoded word that holds another encoded word with CR LF), whatever the Python patch
level does when it folds headers (CVE-2024-6923)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from email_support import Dovecot, Mailbox, SmtpServer, make_settings
from test_email_gateway import CUSTOMER, email_config

from connectors.base import Attachment, ConnectorContext, Identity, OutboundMessage
from connectors.email import EmailConnector
from tests.gateway.conftest import agent_token, gateway_factory, wait_for

__all__ = ["gateway_factory"]

INJECTED = "Hi=0D=0ABcc:_evil@attacker.test=0D=0AX-Injected:_yes"
# Decodes once (when the mail is parsed) to an encoded word that decodes (when the reply's
# Subject is set) to "Hi\r\nBcc: evil@attacker.test\r\nX-Injected: yes".
INNER = f"=?utf-8?q?{INJECTED}?="
NESTED = "=?utf-8?b?" + base64.b64encode(INNER.encode()).decode() + "?="


def hostile_mail(message_id: str) -> bytes:
    return (
        f"From: Dana <{CUSTOMER}>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {NESTED}\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 02 Apr 2012 18:22:10 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Please refund invoice 7.\r\n"
        "--b1\r\n"
        "Content-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=utf-8''invoice%00.pdf%0D%0Aevil\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{base64.b64encode(b'%PDF-1.4 test').decode()}\r\n"
        "--b1--\r\n"
    ).encode()


def header_names(data: bytes) -> list[str]:
    """The names of the header fields on the wire (continuation lines belong to the
    field above them)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line and not line[:1].isspace()
    ]


async def test_no_customer_written_header_reaches_the_smtp_wire(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    _, client = await gateway_factory(email_config(tmp_path, dovecot, mailbox, smtp_server))
    await mailbox.append(hostile_mail(f"<{uuid.uuid4().hex}@customer.test>"))
    convs = await wait_for(lambda: client.conversations_of(f"email:{CUSTOMER}"), timeout=15)
    conv = await wait_for(lambda: client.assigned(convs[0]["id"]))
    (inbound,) = (await client.conversation(conv["id"]))["messages"]
    # what agents see of the customer's attachment name: no NUL, no line break
    (att,) = inbound["attachments"]
    assert "\x00" not in att["name"] and "\r" not in att["name"] and "\n" not in att["name"]
    assert att["name"].startswith("invoice")

    token = agent_token(conv["assignee"])
    path = f"/v1/conversations/{conv['id']}/messages"
    # 1. a reply on the customer's subject; 2. a subject given through the API (the
    # encoded word itself, and raw CR LF)
    for body in (
        {"text": "Refunded."},
        {"text": "Refunded.", "subject": INNER},
        {"text": "Refunded.", "subject": "Hi\r\nBcc: evil@attacker.test\r\nX-Injected: yes"},
    ):
        status, msg = await client.call("POST", path, token=token, json=body)
        assert status == 202, msg
    await wait_for(lambda: len(smtp_server.received) == 3, timeout=15)

    for mail in smtp_server.received:
        assert mail.rcpt_tos == [CUSTOMER]
        names = header_names(mail.data)
        assert "bcc" not in names and "x-injected" not in names, mail.data.decode()[:800]
        assert names.count("subject") == 1
        sent = mail.message
        subject = str(sent["Subject"])
        assert "Hi" in subject and "\r" not in subject and "\n" not in subject
        assert sent["Bcc"] is None and sent["X-Injected"] is None


async def test_an_attached_message_is_not_mistaken_for_injected_headers(
    smtp_server: SmtpServer, ctx: ConnectorContext
) -> None:
    # The wire check compares the headers we set, not those of an attached message.
    conn = EmailConnector("support", make_settings(smtp_port=smtp_server.port), ctx)
    forwarded = b"From: a@b.test\r\nSubject: the original\r\nX-Other: 1\r\n\r\nbody\r\n"
    result = await conn.send(
        OutboundMessage(
            id="out-1",
            conversation_id="c1",
            to=Identity("email", CUSTOMER),
            text="The mail you asked about is attached.",
            subject="Your mail",
            attachments=[Attachment("original.eml", "message/rfc822", len(forwarded), forwarded)],
        )
    )
    assert result.status == "sent", result
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == [CUSTOMER]
    (att,) = list(mail.message.iter_attachments())
    assert att.get_content_type() == "message/rfc822"


async def test_a_recipient_address_holding_an_encoded_word_is_refused(
    smtp_server: SmtpServer, ctx: ConnectorContext
) -> None:
    # The email package would decode it in the To header into a line break and a Bcc.
    conn = EmailConnector("support", make_settings(smtp_port=smtp_server.port), ctx)
    result = await conn.send(
        OutboundMessage(
            id="out-1",
            conversation_id="c1",
            to=Identity("email", "=?utf-8?q?a=0D=0ABcc:_evil=40attacker.test?=@customer.test"),
            text="Hello",
        )
    )
    assert result.status == "failed" and "encoded word" in (result.reason or ""), result
    assert smtp_server.received == []
