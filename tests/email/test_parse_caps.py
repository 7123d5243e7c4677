"""Issue 9: what is read of one mail is capped before the costly parts, so a mail that is
cheap to send stays cheap to read, and ordinary mail reads as before."""

from __future__ import annotations

import time
import uuid

from email_support import ADDRESS, deep_html_mail, many_cc_mail, many_parts_mail

from connectors.email.parse import (
    MAX_ADDRESSES,
    MAX_HTML_DEPTH,
    MAX_PARTS,
    MAX_REFS,
    BounceReport,
    ParsedEmail,
    html_to_text,
    parse_email,
)

# CPU seconds a capped mail may take here (the uncapped reads took 5 to 25 s)
CHEAP = 2.0


def parse(raw: bytes) -> tuple[ParsedEmail, float]:
    started = time.process_time()
    parsed = parse_email(raw, max_attachment_bytes=1_000_000, our_address=ADDRESS)
    elapsed = time.process_time() - started
    assert isinstance(parsed, ParsedEmail) and not isinstance(parsed, BounceReport)
    return parsed, elapsed


def mail(headers: str, content_type: str, body: str) -> bytes:
    return (
        f"From: Ann <ann@customer.test>\r\nTo: {ADDRESS}\r\n{headers}Subject: hi\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def test_fifty_thousand_cc_keep_the_first_thousand_and_the_count() -> None:
    p, cpu = parse(many_cc_mail(50_000))
    assert cpu < CHEAP
    assert p.from_address == "eve@customer.test" and p.subject == "Cc to everyone"
    assert p.text == "Please forward this to everyone."
    assert len(p.cc) == MAX_ADDRESSES == 1000
    assert p.cc[0] == "user0@example0.test" and p.cc[-1] == "user999@example29.test"
    assert p.address_counts == {"cc": 50_000}
    assert "Cc: 50000 addresses, only the first 1000 were read" in p.notes


def test_a_quoted_comma_is_not_an_address_boundary() -> None:
    names = ",\r\n ".join(f'"Doe, Jane {i}" <jane{i}@customer.test>' for i in range(1500))
    p, _ = parse(mail(f"Cc: {names}\r\n", "text/plain", "hi"))
    assert len(p.cc) == 1000 and p.cc[-1] == "jane999@customer.test"
    assert p.address_counts == {"cc": 1500}


def test_html_nested_fifty_thousand_deep_reads_its_text() -> None:
    p, cpu = parse(deep_html_mail(50_000))
    assert cpu < CHEAP
    assert p.text.startswith("Hello, my invoice is wrong.") and "deep down" in p.text
    assert p.html is not None and "deep down" in p.html
    assert any(f"nested deeper than {MAX_HTML_DEPTH}" in n for n in p.notes)


def test_ordinary_html_is_not_flattened() -> None:
    html = (
        "<table>" * 20
        + "".join(f"<tr><td><p>row {i}<li>item" for i in range(500))
        + "</table>" * 20
        + "<div>" * 40
        + "<b>end</b>"
        + "</div>" * 40
    )
    p, _ = parse(mail("", "text/html", html))
    assert p.text == html_to_text(html)
    assert not any("nested deeper" in n for n in p.notes)


def test_a_header_block_of_a_megabyte_still_reads_what_the_gateway_needs() -> None:
    junk = "".join(f"X-Junk-{i}: {'j' * 30}\r\n" for i in range(30_000))
    raw = (
        f"{junk}From: Gil <gil@customer.test>\r\nTo: {ADDRESS}\r\nSubject: after the junk\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello after the junk.\r\n"
    ).encode()
    p, cpu = parse(raw)
    assert cpu < CHEAP
    assert p.from_address == "gil@customer.test" and p.subject == "after the junk"
    assert p.text == "Hello after the junk."
    assert any("header fields were not read" in n for n in p.notes)


def test_fifty_thousand_references_keep_the_root_and_the_latest() -> None:
    refs = " ".join(f"<r{i}@customer.test>" for i in range(50_000))
    p, cpu = parse(mail(f"References: {refs}\r\n", "text/plain", "thanks"))
    assert cpu < CHEAP
    assert len(p.thread_refs) == MAX_REFS
    assert p.thread_refs[0] == "<r0@customer.test>"
    assert p.thread_refs[-1] == "<r49999@customer.test>"


def test_only_the_first_mime_parts_are_walked() -> None:
    p, cpu = parse(many_parts_mail(5_000))
    assert cpu < CHEAP
    assert p.full_text.count("x") == MAX_PARTS - 1  # the multipart itself is a part
    assert f"the mail has more than {MAX_PARTS} MIME parts: the rest was not read" in p.notes
