"""Normalising customer identities so one person is one contact across channels."""

from __future__ import annotations

import phonenumbers

from connectors.base import Identity


class InvalidIdentity(ValueError):
    """An address that cannot be normalised for its kind."""


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 (`+15551234567`); accepts `whatsapp:+1...` and national numbers with a region."""
    text = raw.strip()
    if ":" in text:
        text = text.split(":", 1)[1]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased. An address without a domain (`foo`, `MAILER-DAEMON`: local
    mail, cron jobs, some bounces) is kept as written: it is the only name that sender has.
    Refused: nothing at all, control characters, an `@` with nothing on one side."""
    text = raw.strip().lower()
    if (
        not text
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
        or text.startswith("@")
        or text.endswith("@")
    ):
        raise InvalidIdentity(f"not an email address: {raw!r}")
    return text


def normalize(identity: Identity, default_region: str | None = None) -> Identity:
    """The canonical form of an identity; raises `InvalidIdentity`."""
    kind = identity.kind.strip().lower()
    address = identity.address.strip()
    if not address:
        raise InvalidIdentity(f"empty {kind} address")
    if kind == "email":
        address = normalize_email(address)
    elif kind == "phone":
        address = normalize_phone(address, default_region)
    return Identity(kind, address)


def parse_identity(text: str) -> Identity:
    """`email:a@b.c` → Identity("email", "a@b.c") (normalised)."""
    kind, sep, address = text.partition(":")
    if not sep:
        raise InvalidIdentity("identity must look like kind:address, e.g. email:a@b.c")
    if kind.strip().lower() == "phone" and address.startswith(" "):
        # An unencoded `+` in a query string arrives as a space: phone:+1555… → "phone: 1555…".
        address = "+" + address.lstrip()
    return normalize(Identity(kind, address))
