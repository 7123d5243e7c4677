"""Loop safety: machine-sent mail is flagged, our own mail is recognised."""

from __future__ import annotations

import pytest
from email_support import ADDRESS, make_mail, make_settings
from pydantic import ValidationError

from connectors.email.parse import ParsedEmail, parse_email, split_quote, to_inbound


def parsed(raw: bytes) -> ParsedEmail:
    result = parse_email(
        raw, max_attachment_bytes=1000, our_address=ADDRESS, message_id_domain="mail.example.com"
    )
    assert isinstance(result, ParsedEmail)
    return result


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"Precedence": "bulk"}, "Precedence: bulk"),
        ({"Precedence": "list"}, "Precedence: list"),
        ({"Precedence": "junk"}, "Precedence: junk"),
        ({"X-Auto-Response-Suppress": "All"}, "X-Auto-Response-Suppress"),
        ({"List-Id": "<news.shop.test>"}, "List-Id"),
        ({"List-Unsubscribe": "<mailto:unsub@shop.test>"}, "List-Unsubscribe"),
        ({"X-Loop": ADDRESS}, "X-Loop names our address"),
        ({"Return-Path": "<>"}, "empty Return-Path"),
    ],
)
def test_machine_mail_is_automated(headers: dict[str, str], reason: str) -> None:
    msg = to_inbound(parsed(make_mail("Out of office", headers=headers)))
    assert msg.automated
    assert reason in msg.metadata["automated_reasons"]


def test_human_mail_is_not_automated() -> None:
    msg = to_inbound(
        parsed(make_mail("Help", headers={"Auto-Submitted": "no", "X-Loop": "other@else.test"}))
    )
    assert not msg.automated


def test_own_mail_recognised() -> None:
    assert parsed(make_mail("x", sender=f"Support <{ADDRESS}>")).own
    assert parsed(make_mail("x", sender="SUPPORT+abc@Example.com")).own
    assert parsed(make_mail("x", message_id="<sb.0123@mail.example.com>")).own
    # a customer whose mail server happens to use our domain is still a customer
    assert not parsed(make_mail("x", message_id="<abc@mail.example.com>")).own


def test_threading_fields() -> None:
    raw = make_mail(
        "Re: Refund [#K7]",
        to="Support <support@example.com>",
        message_id="<m3@customer.test>",
        headers={
            "In-Reply-To": "<m2@example.com>",
            "References": "<m1@example.com> <m2@example.com> <m0@example.com>",
        },
    )
    msg = to_inbound(parsed(raw))
    assert msg.thread_refs == ["<m2@example.com>", "<m1@example.com>", "<m0@example.com>"]
    assert msg.thread_token == "K7"
    assert msg.provider_message_id == "<m3@customer.test>"
    assert msg.external_id.startswith("<m3@customer.test>#")  # qualified by sender and date
    plus = to_inbound(parsed(make_mail("Re: x [#K7]", to="support+Z9@example.com")))
    assert plus.thread_token == "Z9"  # the plus-address wins over the subject tag


def test_no_message_id_gives_stable_hash_id() -> None:
    raw = make_mail("no id", no_message_id=True)
    a, b = parsed(raw), parsed(raw)
    assert a.message_id is None and a.external_id.startswith("sha256:")
    assert a.external_id == b.external_id


def test_split_quote_rules() -> None:
    outlook = "Thanks!\n\n________________________________\nFrom: Shop <s@x>\nSent: Monday\nTo: me\nSubject: y\n\nold"
    assert split_quote(outlook).new == "Thanks!"
    inline = "> question 1\nanswer 1\n> question 2\nanswer 2"
    s = split_quote(inline)
    assert s.new == inline and s.quote is None  # inline answers are never cut away
    sig = split_quote("See you\n-- \nBob\nACME")
    assert (sig.new, sig.signature) == ("See you", "-- \nBob\nACME")
    only_quote = split_quote("> just a quote")
    assert only_quote.new == "> just a quote"  # never an empty message


def test_settings_reject_unknown_keys_and_long_idle() -> None:
    with pytest.raises(ValidationError):
        make_settings(imap={"bogus": 1})
    with pytest.raises(ValidationError):
        make_settings(imap={"idle_timeout": 29 * 60})
    with pytest.raises(ValidationError):
        make_settings(smtp={"tls": True, "starttls": True})
