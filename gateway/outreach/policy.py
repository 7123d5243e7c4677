"""Which channel kinds may start a conversation, and on which condition (pure).

- `email`, `twilio_sms`, `api`: always (the address is all they need).
- `telegram`: only with a user who has written to the bot on that channel before (a bot
  cannot write first).
- `twilio_whatsapp`: only through an approved template (the 24-hour window is closed for a
  customer who has not written).
- `webchat` and anything else: never (a visitor is reached only while on the page; the
  widget invites by rules instead).
"""

from __future__ import annotations

from dataclasses import dataclass

# The identity kind a channel kind addresses its customers by (DESIGN §3).
IDENTITY_KIND: dict[str, str] = {
    "email": "email",
    "twilio_sms": "phone",
    "twilio_whatsapp": "phone",
    "telegram": "telegram",
    "api": "api",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a conversation cannot be started: an error code and its message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Permit:
    """The channel may start: the identity kind to address, and whether the contact must
    have written on the channel before (Telegram)."""

    identity_kind: str
    needs_inbound: bool = False


def may_start(
    channel: str, channel_kind: str, *, template: bool, subject: str | None
) -> Permit | Refusal:
    """Whether channel `channel` (of `channel_kind`) can open a conversation."""
    kind = IDENTITY_KIND.get(channel_kind)
    if kind is None:
        return Refusal(
            "channel_cannot_start",
            f"channel {channel!r} ({channel_kind}) cannot start a conversation: its customers "
            "are reached only when they write first",
        )
    if channel_kind == "twilio_whatsapp" and not template:
        return Refusal(
            "template_required",
            f"channel {channel!r} is WhatsApp: a conversation starts only with an approved "
            "template (give `template: {sid, variables}`)",
        )
    if channel_kind != "twilio_whatsapp" and template:
        return Refusal(
            "template_not_supported",
            f"channel {channel!r} ({channel_kind}) sends no templates; give `text` only",
        )
    if channel_kind == "email" and not (subject or "").strip():
        return Refusal("subject_required", "an email conversation needs a `subject`")
    return Permit(kind, needs_inbound=channel_kind == "telegram")


OPT_OUT_ATTRIBUTE = "do_not_contact"
_TRUE = frozenset({"true", "yes", "1", "on"})


def opted_out(attributes: dict[str, str]) -> bool:
    """The contact asked not to be contacted first (attribute `do_not_contact: true`)."""
    return str(attributes.get(OPT_OUT_ATTRIBUTE, "")).strip().lower() in _TRUE
