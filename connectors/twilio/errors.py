"""Descriptions of the Twilio error codes a support team meets most (status callbacks carry
only the code)."""

from __future__ import annotations

ERRORS: dict[int, str] = {
    20003: "Authentication failed",
    20429: "Too many requests",
    21211: "Invalid 'To' phone number",
    21408: "Permission to send an SMS has not been enabled for the region",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered by the carrier",
    30008: "Unknown error",
    30034: "Message from an unregistered number (US A2P 10DLC)",
    63003: "WhatsApp channel could not find the To address",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "Please use a Template."
    ),
    63024: "Invalid WhatsApp message recipient",
}

WHATSAPP_WINDOW_CLOSED = 63016


def describe_error(code: int | str | None) -> str | None:
    if code is None or code == "":
        return None
    try:
        return ERRORS.get(int(code))
    except (TypeError, ValueError):
        return None


def error_reason(code: int | str | None, message: str | None = None) -> str | None:
    """`twilio error 30003: Unreachable destination handset`, or None without a code."""
    if code is None or code == "":
        return message or None
    text = message or describe_error(code) or "see https://www.twilio.com/docs/api/errors"
    return f"twilio error {code}: {text}"
