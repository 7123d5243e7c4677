"""Every real-world message of the corpora in tests/corpora parses; what we assert comes
from the files."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from email_support import CORPORA, corpus, corpus_file

from connectors.base import DeliveryReceipt, InboundMessage
from connectors.email.parse import (
    BounceReport,
    ParsedEmail,
    parse_email,
    split_html_reply,
    to_event,
    to_inbound,
)

# Collected at import: a missing corpus is a collection error, never an empty (skipped)
# parametrisation.
ALL_EML = corpus("*.eml")
STANDARD = corpus_file("talon", "standard_replies", "sparrow.eml").parent
HTML_REPLIES = corpus("*.html", under="talon/html_replies")
MAILPARSER = corpus_file("nodemailer-mailparser", "delivery-status.eml").parent
STANDARD_EML = corpus("*.eml", under="talon/standard_replies")


def parse(path: Path, **kw: object) -> ParsedEmail | BounceReport:
    return parse_email(
        path.read_bytes(),
        max_attachment_bytes=int(kw.get("limit", 1_000_000)),  # type: ignore[call-overload]
        our_address=str(kw.get("our", "support@example.com")),
    )


def squash(text: str) -> str:
    return " ".join(text.split())


def test_corpora_are_there() -> None:
    assert len(ALL_EML) >= 20 and len(HTML_REPLIES) == 9, CORPORA


@pytest.mark.parametrize("path", ALL_EML, ids=[str(p.relative_to(CORPORA)) for p in ALL_EML])
def test_every_file_parses(path: Path) -> None:
    result = parse(path)
    event = to_event(result)
    if isinstance(result, ParsedEmail):
        assert result.raw == path.read_bytes()
        msg = to_inbound(result)
        assert msg.external_id
        assert msg.raw == path.read_bytes()
        # something readable came out: text or at least an attachment
        assert msg.text or msg.attachments, f"{path.name}: nothing readable"
    else:
        # a delivery report: a receipt when it is about our mail, else a visible message
        assert isinstance(event, DeliveryReceipt | InboundMessage)
        if isinstance(event, InboundMessage):
            assert event.automated and event.text, f"{path.name}: nothing readable"


@pytest.mark.parametrize("name", ["sparrow", "iphone"])
def test_reply_text_matches_talon_expectation(name: str) -> None:
    result = parse(STANDARD / f"{name}.eml")
    assert isinstance(result, ParsedEmail)
    expected = (STANDARD / f"{name}_reply_text").read_text()
    # talon's expected text is the reply with its signature; we keep the signature apart
    assert squash(result.text + "\n" + (result.signature or "")) == squash(expected)
    assert result.signature and result.signature.strip() in expected
    assert "> Hi" not in result.text and result.quote and "Hi" in result.quote
    inbound = to_inbound(result)
    assert "wrote:" in inbound.metadata["quoted"]  # the full text with the quote is kept


@pytest.mark.parametrize("name", [p.stem for p in STANDARD_EML if p.stem not in ("outlook",)])
def test_standard_replies_keep_only_the_new_text(name: str) -> None:
    result = parse(STANDARD / f"{name}.eml")
    assert isinstance(result, ParsedEmail)
    # every one of these replies says "Hello" above a quoted "Hi"
    assert result.text.split("\n")[0].strip() == "Hello", result.text
    assert "Hi" not in result.text.replace("Hello", "")
    assert result.quote is not None and "Hi" in result.quote


def test_outlook_reply_iso_8859_1() -> None:
    raw = (STANDARD / "outlook.eml").read_bytes()
    assert b"charset=ISO-8859-1" in raw
    result = parse(STANDARD / "outlook.eml")
    assert isinstance(result, ParsedEmail)
    assert result.text == "Hello"
    assert result.quote is not None and result.quote.startswith("From: xxx@xxx.mailgun.org")
    assert "Sent: March-09-12 4:22 PM" in result.quote
    # the HTML alternative is kept, sanitised: no <style> block survives
    assert result.html is not None and "Allo! Follow up MIME!" in result.html
    assert "<style" not in result.html and "font-family:Calibri" not in result.html


def test_android_utf8_base64_cyrillic_attribution() -> None:
    result = parse(STANDARD / "android.eml")
    assert isinstance(result, ParsedEmail)
    assert result.text == "Hello"
    assert result.quote is not None and "пользователь" in result.quote and "написал" in result.quote


def test_latin1_8bit_html_decodes_accented_text() -> None:
    path = MAILPARSER / "decoderended.eml"
    assert b"html section\xdc" in path.read_bytes()  # ISO-8859-1 "Ü", 8bit
    result = parse(path)
    assert isinstance(result, ParsedEmail)
    assert result.html is not None and "html sectionÜ" in result.html
    assert result.text.startswith("Note: forwarded message attached.")
    assert [a.content_type for a in result.attachments] == ["message/rfc822"]


def test_encoded_word_subject_and_rfc2231_attachment_names() -> None:
    path = MAILPARSER / "nodemailer.eml"
    raw = path.read_bytes().decode().replace("\r\n", "\n")
    result = parse(path, limit=10_000, our="andris@kreata.ee")
    assert isinstance(result, ParsedEmail)
    assert result.subject == "Nodemailer is unicode friendly ✔ (1476358788189)"
    assert result.text == "Hello to myself!"
    # "To: Andris Reinman <andris+123@kreata.ee>": a plus-address of our address
    assert result.thread_token == "123"
    names = [(a.name, a.content_type) for a in result.attachments]
    assert names == [
        ("image.png", "image/png"),
        ("nyan cat ✔.gif", "image/gif"),
        ("notes.txt", "text/plain"),
    ]
    png_b64 = raw.split("filename=image.png\nContent-Transfer-Encoding: base64\n\n")[1]
    png = base64.b64decode(png_b64.split("\n------")[0])
    png_att, gif_att, notes_att = result.attachments
    assert png_att.size == len(png) and png_att.data == png
    assert notes_att.data == b"Some notes about this e-mail"
    # the gif is bigger than the 10 kB limit: name, type and size kept, data dropped, noted
    assert gif_att.data is None and gif_att.size > 10_000
    assert any("nyan cat" in n for n in result.notes)
    assert "nyan cat" in " ".join(to_inbound(result).metadata["notes"])


def test_base64_root_attachment() -> None:
    path = MAILPARSER / "base64encodedroot.eml"
    result = parse(path)
    assert isinstance(result, ParsedEmail)
    (att,) = result.attachments
    body = path.read_text().split("\n\n", 1)[1]
    assert (att.name, att.content_type) == ("screenshot.png", "image/png")
    assert att.data == base64.b64decode(body) and att.size == len(att.data)
    assert att.data.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["mixed.eml", "nested.eml"])
def test_multipart_mixed_and_nested_keep_every_inline_text(name: str) -> None:
    result = parse(MAILPARSER / name)
    assert isinstance(result, ParsedEmail)
    assert result.attachments == []  # these files carry no named attachment
    if name == "mixed.eml":
        assert "scanned for Viruses" in result.text and "Good Morning;" in result.text
    else:
        assert "Dear Sir," in result.text and "Good evening." in result.text
        assert "The footer" in result.text
        assert result.html is not None and "<p>The footer</p>" in result.html


def test_delivery_status_bounce_about_mail_we_never_sent_is_shown() -> None:
    # Amazon SES reports on <xxxxx@email.amazonses.com>: not one of our Message-IDs, so no
    # reply of ours can be failed by it; it is kept as an automated message with its reason
    result = parse(MAILPARSER / "delivery-status.eml")
    assert isinstance(result, BounceReport)
    assert result.original_message_id == "<xxxxx@email.amazonses.com>"
    assert (result.status, result.action, result.ours) == ("5.1.1", "failed", False)
    event = to_event(result)
    assert isinstance(event, InboundMessage)
    assert event.automated and event.sender.address == "MAILER-DAEMON@amazonses.com"
    assert event.metadata["bounce"].startswith("5.1.1")
    assert "suppression list" in event.metadata["bounce"]
    assert event.metadata["about"] == "<xxxxx@email.amazonses.com>"


def test_bounce_with_text_rfc822_headers_part() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: support@example.com\r\n"
        b"Subject: Undelivered\r\nMessage-ID: <b1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; gone@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"From: support@example.com\r\nMessage-ID: <sb.123@mail.example.com>\r\n\r\n--B--\r\n"
    )
    result = parse_email(
        raw,
        max_attachment_bytes=1000,
        our_address="support@example.com",
        message_id_domain="mail.example.com",
    )
    assert isinstance(result, BounceReport)
    event = to_event(result)
    assert isinstance(event, DeliveryReceipt)
    assert event.provider_message_id == "<sb.123@mail.example.com>"
    assert event.reason == "5.1.1: 550 5.1.1 user unknown"
    assert result.recipient == "gone@customer.test"


def test_large_list_mail_is_automated() -> None:
    result = parse(MAILPARSER / "large_text.eml")
    assert isinstance(result, ParsedEmail)
    assert result.automated
    assert "Precedence: bulk" in result.automated_reasons and "List-Id" in result.automated_reasons
    assert result.thread_refs == ["<20090529095654.29876.20294.malonedeb@gangotri.canonical.com>"]
    assert result.signature is not None and "ubuntu-bugs mailing list" in result.signature


def _html_mail(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alex <alex.l@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Re: Test message"
    msg.set_content(html, subtype="html")
    return msg.as_bytes(policy=SMTP)


@pytest.mark.parametrize("path", HTML_REPLIES, ids=[p.name for p in HTML_REPLIES])
def test_html_replies_separate_the_quote(path: Path) -> None:
    html = path.read_text(encoding="utf-8")
    # every one of these files answers "Hello! How are you? ... Sasha." with "I am fine ... Alex"
    assert "Hello! How are you?" in html and "Hi. I am fine." in html
    split, _, _ = split_html_reply(html)
    assert squash(split.new) == "Hi. I am fine. Thanks, Alex", split.new
    assert split.quote is not None and "Hello! How are you?" in split.quote
    # end to end through a message with that HTML as its only body
    result = parse_email(_html_mail(html), max_attachment_bytes=0, our_address="s@example.com")
    assert isinstance(result, ParsedEmail)
    assert squash(result.text) == "Hi. I am fine. Thanks, Alex"
    assert "Hello! How are you?" in to_inbound(result).metadata["quoted"]
    assert result.html is not None and "<script" not in result.html and "<style" not in result.html
    assert re.search(r"Hi\. I am fine\.", result.html)
