"""Phone numbers as E.164, shared by SMS and WhatsApp so one person is one contact."""

from __future__ import annotations

import phonenumbers

WHATSAPP_PREFIX = "whatsapp:"


def to_e164(value: str, region: str | None = None) -> str | None:
    """`+1 (555) 010-0000`, `whatsapp:+15550100000` -> `+15550100000`; None if invalid."""
    raw = value.strip().removeprefix(WHATSAPP_PREFIX).strip()
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_address(value: str) -> str:
    """The phone identity address of a Twilio `From`: E.164 when it parses, else the raw
    value (short codes, alphanumeric senders) without the channel prefix."""
    return to_e164(value) or value.strip().removeprefix(WHATSAPP_PREFIX)
