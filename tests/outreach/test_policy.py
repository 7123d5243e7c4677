"""Which channel kinds may write first, and on which condition (gateway/outreach/policy.py)."""

from __future__ import annotations

import pytest

from gateway.outreach.policy import Permit, Refusal, may_start, opted_out


@pytest.mark.parametrize(
    ("kind", "template", "subject", "expected"),
    [
        ("email", False, "Hello", Permit("email")),
        ("email", False, " ", "subject_required"),
        ("email", True, "Hello", "template_not_supported"),
        ("twilio_sms", False, None, Permit("phone")),
        ("api", False, None, Permit("api")),
        ("telegram", False, None, Permit("telegram", needs_inbound=True)),
        ("twilio_whatsapp", False, None, "template_required"),
        ("twilio_whatsapp", True, None, Permit("phone")),
        ("webchat", False, None, "channel_cannot_start"),
        ("something_new", False, None, "channel_cannot_start"),
    ],
)
def test_may_start(kind: str, template: bool, subject: str | None, expected: object) -> None:
    decided = may_start("ch", kind, template=template, subject=subject)
    if isinstance(expected, str):
        assert isinstance(decided, Refusal) and decided.code == expected
        assert "'ch'" in decided.message or "subject" in decided.message
    else:
        assert decided == expected


def test_opted_out() -> None:
    assert opted_out({"do_not_contact": "true"}) and opted_out({"do_not_contact": " Yes"})
    assert not opted_out({"do_not_contact": "false"}) and not opted_out({})
