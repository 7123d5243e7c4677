"""The send side against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
from typing import Any

from email_support import ADDRESS, SmtpServer, free_port, make_settings

from connectors.base import Attachment, ConnectorContext, Identity, OutboundMessage
from connectors.email import EmailConnector
from connectors.email.compose import build_message
from connectors.email.parse import ParsedEmail, parse_email


def outbound(**kw: Any) -> OutboundMessage:
    data: dict[str, Any] = {
        "id": "out-1",
        "conversation_id": "c1",
        "to": Identity("email", "alice@customer.test"),
        "text": "Your parcel is on its way.",
        "subject": "Where is my order?",
    }
    data.update(kw)
    return OutboundMessage(**data)


def connector(ctx: ConnectorContext, port: int, **kw: Any) -> EmailConnector:
    return EmailConnector("support", make_settings(smtp_port=port, **kw), ctx)


async def test_reply_headers_and_alternatives(
    smtp_server: SmtpServer, ctx: ConnectorContext
) -> None:
    conn = connector(ctx, smtp_server.port)
    result = await conn.send(
        outbound(
            html="<p>Your parcel is <b>on its way</b>.</p>",
            thread_refs=[
                "<first@customer.test>",
                "<sb.1@mail.example.com>",
                "<second@customer.test>",
            ],
            thread_token="T42x",
            attachments=[Attachment("label.pdf", "application/pdf", 4, data=b"%PDF")],
        )
    )
    assert result.status == "sent", result
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == ["alice@customer.test"]
    msg = mail.message
    assert msg["Message-ID"] == result.provider_message_id
    assert result.provider_message_id.endswith("@mail.example.com>")
    assert msg["In-Reply-To"] == "<second@customer.test>"
    assert msg["References"].split() == [
        "<first@customer.test>",
        "<sb.1@mail.example.com>",
        "<second@customer.test>",
    ]
    assert msg["Reply-To"].addresses[0].addr_spec == "support+T42x@example.com"
    assert msg["From"].addresses[0].addr_spec == ADDRESS
    assert msg["From"].addresses[0].display_name == "Example Support"
    assert msg["Subject"] == "Re: Where is my order? [#T42x]"
    assert msg["Auto-Submitted"] is None
    body = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert body is not None and body.get_content().strip() == "Your parcel is on its way."
    assert html is not None and "<b>on its way</b>" in html.get_content()
    (att,) = list(msg.iter_attachments())
    assert att.get_filename() == "label.pdf" and att.get_content() == b"%PDF"

    # the customer answers our mail: the parser finds the token and the thread again
    answer = (
        f"From: Alice <alice@customer.test>\r\nTo: {msg['Reply-To']}\r\n"
        f"Subject: Re: {msg['Subject']}\r\nMessage-ID: <answer@customer.test>\r\n"
        f"In-Reply-To: {msg['Message-ID']}\r\nReferences: {msg['References']} "
        f"{msg['Message-ID']}\r\n\r\nThanks!\r\n"
    ).encode()
    parsed = parse_email(answer, max_attachment_bytes=0, our_address=ADDRESS)
    assert isinstance(parsed, ParsedEmail)
    assert parsed.thread_token == "T42x"
    assert parsed.thread_refs[0] == result.provider_message_id
    assert not parsed.own


async def test_subject_re_and_tag_not_doubled(
    smtp_server: SmtpServer, ctx: ConnectorContext
) -> None:
    conn = connector(ctx, smtp_server.port)
    await conn.send(
        outbound(subject="RE: Re: Refund [#abc]", thread_refs=["<x@y>"], thread_token="abc")
    )
    await conn.send(outbound(subject="New question", thread_token=None))
    first, second = (m.message for m in smtp_server.received)
    assert first["Subject"] == "Re: Refund [#abc]"
    assert second["Subject"] == "New question"
    assert second["In-Reply-To"] is None and second["References"] is None
    assert second["Reply-To"] is None


async def test_header_injection_is_blocked(smtp_server: SmtpServer, ctx: ConnectorContext) -> None:
    conn = connector(ctx, smtp_server.port)
    result = await conn.send(
        outbound(
            subject="Hello\r\nBcc: evil@x",
            sender_name="Agent\r\nBcc: evil@x",
            thread_refs=["<a@b>\r\nBcc: evil@x"],
        )
    )
    assert result.status == "sent", result
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == ["alice@customer.test"]
    msg = mail.message
    assert msg["Bcc"] is None
    assert not any(line.lower().startswith(b"bcc:") for line in mail.data.splitlines())
    assert "Hello" in msg["Subject"] and "\n" not in msg["Subject"]
    bad = await conn.send(outbound(to=Identity("email", "a@b.c\r\nBcc: evil@x")))
    assert bad.status == "failed"
    assert len(smtp_server.received) == 1


async def test_automatic_reply_marks_itself(smtp_server: SmtpServer, ctx: ConnectorContext) -> None:
    conn = connector(ctx, smtp_server.port)
    await conn.send(outbound(automatic=True))
    msg = smtp_server.received[0].message
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == ADDRESS
    # and if it ever comes back to us, it is recognised as our own mail
    parsed = parse_email(
        smtp_server.received[0].data,
        max_attachment_bytes=0,
        our_address=ADDRESS,
        message_id_domain="mail.example.com",
    )
    assert isinstance(parsed, ParsedEmail) and parsed.own and parsed.automated


async def test_smtp_down_is_retry(ctx: ConnectorContext) -> None:
    conn = connector(ctx, free_port())
    result = await conn.send(outbound())
    assert result.status == "retry" and result.reason


async def test_451_is_retry_and_550_is_failed_with_reason(
    smtp_server: SmtpServer, ctx: ConnectorContext
) -> None:
    conn = connector(ctx, smtp_server.port)
    smtp_server.reply = "451 4.3.0 Mail server temporarily rejected message"
    result = await conn.send(outbound())
    assert result.status == "retry"
    assert result.reason is not None and "451" in result.reason
    smtp_server.reply = "550 5.1.1 Mailbox does not exist"
    result = await conn.send(outbound())
    assert result.status == "failed"
    assert result.reason == "550 5.1.1 Mailbox does not exist"


async def test_dropped_connection_is_retry(ctx: ConnectorContext) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")
        await writer.drain()
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await connector(ctx, port).send(outbound())
    finally:
        server.close()
        await server.wait_closed()
    assert result.status == "retry"


def test_references_are_capped_keeping_first_and_latest() -> None:
    refs = [f"<m{i}@x>" for i in range(50)]
    msg, _ = build_message(outbound(thread_refs=refs), make_settings())
    kept = msg["References"].split()
    assert kept[0] == "<m0@x>" and kept[-1] == "<m49@x>" and len(kept) == 20
    assert msg["In-Reply-To"] == "<m49@x>"
