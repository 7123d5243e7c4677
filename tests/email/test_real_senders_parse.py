"""Mail shapes that real senders write, read by the parser: each one must give a message
with sensible text (or, for a report about our own mail, a receipt), never an exception
or mojibake."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from email_support import ADDRESS, dsn, make_mail

from connectors.base import DeliveryReceipt, InboundMessage
from connectors.email.parse import BounceReport, ParsedEmail, parse_email, to_event, to_inbound
from gateway.identity import normalize, normalize_email


def parse(raw: bytes) -> ParsedEmail | BounceReport:
    return parse_email(
        raw,
        max_attachment_bytes=10_000,
        our_address=ADDRESS,
        message_id_domain="mail.example.com",
    )


def inbound(raw: bytes) -> InboundMessage:
    event = to_event(parse(raw))
    assert isinstance(event, InboundMessage)
    return event


def storable(msg: InboundMessage) -> None:
    """What the store writes must be valid UTF-8 (no lone surrogates anywhere)."""
    for value in (msg.external_id, msg.sender.address, msg.sender_name or "", msg.text):
        value.encode("utf-8")
    json.dumps(msg.metadata, ensure_ascii=False).encode("utf-8")


# -- 1. a From without a domain ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "address"), [("foo", "foo"), ("MAILER-DAEMON", "mailer-daemon")]
)
def test_domainless_from_is_the_contact_address(header: str, address: str) -> None:
    msg = inbound(
        f"From: {header}\r\nTo: {ADDRESS}\r\nSubject: cron output\r\n"
        "Message-ID: <c1@host.local>\r\n\r\nbackup finished\r\n".encode()
    )
    assert msg.text == "backup finished"
    assert normalize(msg.sender).address == address
    assert normalize_email("  Foo ") == "foo"


def test_email_identity_still_refuses_what_is_not_an_address() -> None:
    for bad in ("", "   ", "@example.com", "foo@", "a\r\nBcc: x@y.z"):
        with pytest.raises(ValueError):
            normalize_email(bad)


# -- 3. RFC 6532: raw UTF-8 in address headers -------------------------------------------


def test_raw_utf8_addresses_are_read_as_utf8() -> None:
    raw = (
        "From: Jörg Müller <jörg@bücher.example>\r\n"
        "To: 支援 <支援@example.com>, support@example.com\r\n"
        "Cc: zoë@example.org\r\n"
        "Subject: Grüße\r\n"
        "Message-ID: <u8@bücher.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nDie Bestellung fehlt.\r\n"
    ).encode()
    msg = inbound(raw)
    storable(msg)
    assert msg.sender.address == "jörg@bücher.example"
    assert msg.sender_name == "Jörg Müller"
    assert msg.metadata["to"] == ["支援@example.com", "support@example.com"]
    assert msg.metadata["cc"] == ["zoë@example.org"]
    assert msg.provider_message_id == "<u8@bücher.example>"
    assert msg.subject == "Grüße" and msg.text == "Die Bestellung fehlt."


def test_raw_8bit_address_that_is_not_utf8_is_still_storable() -> None:
    raw = b"From: Ren\xe9 <ren\xe9@example.fr>\r\nSubject: x\r\n\r\nbonjour\r\n"
    msg = inbound(raw)
    storable(msg)
    assert msg.sender.address == "rené@example.fr" and msg.sender_name == "René"


# -- 5. charsets -------------------------------------------------------------------------


def _mail(charset: str, body: bytes, subject: str = "charset") -> bytes:
    return (
        f"From: a@customer.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body


def test_utf8_part_with_a_few_invalid_bytes_keeps_its_utf8() -> None:
    msg = inbound(_mail("utf-8", "Grüße aus Köln ".encode() + b"\xff\xfe" + " — café".encode()))
    assert msg.text == "Grüße aus Köln \ufffd\ufffd — café"


# (label as senders write it, text, the codec mail clients actually use for that label)
SUPERSETS = [
    ("gb2312", "我們的訂單", "gb18030"),  # 們, 訂, 單 are not in GB 2312
    ("GBK", "订单 𠀀", "gb18030"),  # U+20000 only exists in GB 18030
    ("iso-8859-1", "“quoted” – 5 €", "cp1252"),  # noqa: RUF001 - the dash is the point
    ("us-ascii", "“smart quotes”", "cp1252"),
    ("latin1", "naïve café €", "cp1252"),
    ("ks_c_5601-1987", "똠방각하", "cp949"),  # 똠 is not in KS X 1001 (EUC-KR)
    ("euc-kr", "똠얌꿍", "cp949"),
    ("iso-8859-8-i", "שלום עולם", "iso8859-8"),
    ("tis-620", "สวัสดี … €", "cp874"),  # … and € are windows-874 only
    ("shift_jis", "①番の注文～", "cp932"),  # noqa: RUF001 - NEC specials, Windows wave dash
    ("x-sjis", "ご注文", "cp932"),
    ("big5", "香港 𨋢", "big5hkscs"),  # 𨋢 (lift) is HKSCS
    ("iso-8859-9", "Sipariş € ‰", "cp1254"),
]


@pytest.mark.parametrize(("label", "text", "codec"), SUPERSETS, ids=[s[0] for s in SUPERSETS])
def test_charset_labels_are_read_as_their_superset(label: str, text: str, codec: str) -> None:
    msg = inbound(_mail(label, text.encode(codec)))
    assert msg.text == text


def test_encoded_word_subject_is_read_as_the_superset() -> None:
    word = base64.b64encode("我們的訂單".encode("gb18030")).decode()
    msg = inbound(_mail("gb2312", "好".encode("gb18030"), subject=f"=?gb2312?B?{word}?= 123"))
    assert msg.subject == "我們的訂單 123"


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("=?gb2312?B?" + base64.b64encode("王們".encode("gb18030")).decode() + "?=", "王們"),
        ("=?iso-8859-1?Q?=80uro_Fran=E7ois?=", "€uro François"),  # cp1252's € at 0x80
    ],
)
def test_encoded_word_display_name_is_read_as_the_superset(word: str, name: str) -> None:
    msg = inbound(f"From: {word} <who@example.cn>\r\nSubject: x\r\n\r\nhi\r\n".encode())
    assert (msg.sender_name, msg.sender.address) == (name, "who@example.cn")


# -- 6. one Message-ID, several senders ----------------------------------------------------


def test_message_id_reused_by_another_sender_is_another_message() -> None:
    mid = "<template-1@mailer.example>"
    alice = make_mail("order", sender="alice@customer.test", message_id=mid)
    bob = make_mail("order", sender="bob@other.test", message_id=mid)
    a, b = inbound(alice), inbound(bob)
    assert a.external_id != b.external_id
    # the same mail again (a redelivery, a backfill) has the same id
    assert inbound(alice).external_id == a.external_id
    # threading still goes by the Message-ID itself
    assert a.provider_message_id == b.provider_message_id == mid
    assert mid in a.external_id


def test_redelivery_through_another_path_keeps_its_id() -> None:
    mail = make_mail("hello", sender="alice@customer.test", message_id="<r1@customer.test>")
    relayed = b"Received: from mx2.example.com by mx1.example.com\r\nDelivered-To: x\r\n" + mail
    assert inbound(relayed).external_id == inbound(mail).external_id


def test_absurdly_long_message_id_still_gives_a_storable_id() -> None:
    mail = make_mail("x", message_id="<" + "a" * 2000 + "@customer.test>")
    msg = inbound(mail)
    assert 0 < len(msg.external_id) <= 512


# -- 4. delivery status notifications ------------------------------------------------------


OURS = "<sb.0a1b2c@mail.example.com>"


def test_bounce_about_mail_we_never_sent_is_a_visible_automated_message() -> None:
    event = to_event(parse(dsn("<someone-else@elsewhere.test>", ("x@y.test", "failed", "5.1.1"))))
    assert isinstance(event, InboundMessage)
    assert event.automated and event.sender.address == "MAILER-DAEMON"
    assert event.text == (
        "This is a report about your message.\n\n"
        "Delivery status for x@y.test: failed (5.1.1: 5.1.1 mailbox busy)"
    )
    assert event.metadata["bounce"].startswith("5.1.1")


@pytest.mark.parametrize("action", ["delayed", "relayed", "expanded"])
def test_a_dsn_that_is_not_a_failure_never_fails_our_reply(action: str) -> None:
    event = to_event(parse(dsn(OURS, ("dana@customer.test", action, "4.4.7"))))
    assert not (isinstance(event, DeliveryReceipt) and event.status == "failed")
    assert isinstance(event, InboundMessage) and event.automated
    assert event.metadata["dsn_action"] == action


def test_failed_dsn_about_our_mail_fails_it_even_when_another_recipient_is_delayed() -> None:
    event = to_event(
        parse(
            dsn(
                OURS,
                ("a@customer.test", "delayed", "4.4.7"),
                ("b@customer.test", "failed", "5.1.1"),
            )
        )
    )
    assert isinstance(event, DeliveryReceipt)
    assert (event.provider_message_id, event.status) == (OURS, "failed")
    assert event.reason is not None and event.reason.startswith("5.1.1")


def test_delivered_dsn_about_our_mail_is_a_delivered_receipt() -> None:
    event = to_event(parse(dsn(OURS, ("dana@customer.test", "delivered", "2.0.0"))))
    assert isinstance(event, DeliveryReceipt) and event.status == "delivered"


def test_inbound_of_domainless_bounce_sender_is_storable() -> None:
    parsed = parse(
        make_mail("x", sender="MAILER-DAEMON", headers={"Auto-Submitted": "auto-replied"})
    )
    assert isinstance(parsed, ParsedEmail)
    event = to_inbound(parsed)
    storable(event)
    assert event.automated


# -- raw 8-bit legacy headers ---------------------------------------------------------


def test_raw_latin1_header_bytes_are_read_like_the_body() -> None:
    """An old client writes Subject, From name and file name as raw ISO-8859-1 bytes (no
    RFC 2047): they are read as windows-1252, as the unlabelled body is, not as U+FFFD."""
    raw = (Path(__file__).parent / "eml" / "latin1_8bit_headers.eml").read_bytes()
    parsed = parse(raw)
    assert isinstance(parsed, ParsedEmail)
    assert parsed.subject == "Grüße aus Köln"
    msg = inbound(raw)
    storable(msg)
    assert msg.sender_name == "Jürgen Müller"
    assert msg.text.startswith("Viele Grüße, die Rechnung für März liegt bei.")
    assert [a.name for a in msg.attachments] == ["Rechnung März.pdf"]
    # UTF-8 raw bytes (RFC 6532) stay UTF-8.
    utf8 = raw.replace("Grüße aus Köln".encode("latin-1"), "Grüße aus Köln".encode())
    assert parse(utf8).subject == "Grüße aus Köln"  # type: ignore[union-attr]
