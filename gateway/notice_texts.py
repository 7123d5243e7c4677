"""What the gateway tells a customer about time by itself (issue 12): the out-of-hours reply
and the long-wait message, in German and English, overridable per language in the config
(`notices:`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

Language = Literal["de", "en"]

CLOSED: dict[str, str] = {
    "en": "Thank you for your message. We are closed right now and back {opens}; we will "
    "answer you then.",
    "de": "Danke für Ihre Nachricht. Wir sind gerade nicht erreichbar und {opens} wieder für "
    "Sie da; dann antworten wir Ihnen.",
}
WAIT: dict[str, str] = {
    "en": "All our agents are busy. You are number {position} in the queue; the estimated wait "
    "is {wait}.",
    "de": "Alle unsere Mitarbeiter sind im Gespräch. Sie sind Nummer {position} in der "
    "Warteschlange; die geschätzte Wartezeit beträgt {wait}.",
}
_DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
}


def _duration(value: Any) -> float:
    from router.hours import duration

    return duration(value)


class NoticesConfig(BaseModel):
    """`notices:` — automatic messages about time, per language (`de`, `en`)."""

    model_config = ConfigDict(extra="forbid")
    closed: dict[Language, str] = Field(
        default_factory=dict,
        description="Out-of-hours reply; {opens} is e.g. 'at 08:00' or 'on Monday at 08:00'.",
    )
    wait: dict[Language, str] = Field(
        default_factory=dict,
        description="Long-wait message; placeholders {position}, {wait}.",
    )
    wait_after: float | None = Field(
        None,
        gt=0,
        description="Send the long-wait message (SMS, WhatsApp, Telegram, email) once a "
        "conversation has waited this long (e.g. 10m); none: never.",
    )
    wait_channel_kinds: list[str] = Field(
        default_factory=lambda: ["twilio_sms", "twilio_whatsapp", "telegram", "email"],
        description="Channel kinds that get the long-wait message.",
    )
    max_per_contact: int = Field(
        3, ge=1, description="Automatic messages per contact per window (loop guard)."
    )
    window: float = Field(86400.0, gt=0)

    @field_validator("closed")
    @classmethod
    def _closed(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            text.format(opens="")
        return value

    @field_validator("wait")
    @classmethod
    def _wait(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            text.format(position="", wait="")
        return value

    @field_validator("wait_after", "window", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return None if value is None else _duration(value)

    def closed_text(self, language: str, opens: str) -> str:
        return (self.closed.get(language) or CLOSED[language]).format(opens=opens)  # type: ignore[call-overload]

    def wait_text(self, language: str, position: int, wait: float | None) -> str:
        template = self.wait.get(language) or WAIT[language]  # type: ignore[call-overload]
        return str(template).format(position=position, wait=wait_phrase(language, wait))


def language_of(tag: object) -> str:
    """`de`, `de-AT` → "de"; anything else (or nothing) → "en"."""
    if isinstance(tag, str) and tag.strip().lower()[:2] == "de":
        return "de"
    return "en"


def opens_phrase(language: str, opens_at: float | None, now: float, zone: ZoneInfo | None) -> str:
    """'at 08:00' today, 'tomorrow at 08:00', 'on Monday at 08:00' (in the queue's zone)."""
    if opens_at is None:
        return "später" if language == "de" else "later"
    tz = zone or ZoneInfo("UTC")
    when = dt.datetime.fromtimestamp(opens_at, tz)
    today = dt.datetime.fromtimestamp(now, tz).date()
    clock = when.strftime("%H:%M")
    days = (when.date() - today).days
    if language == "de":
        if days == 0:
            return f"ab {clock} Uhr"
        if days == 1:
            return f"morgen ab {clock} Uhr"
        if days < 7:
            return f"am {_DAYS['de'][when.weekday()]} ab {clock} Uhr"
        return f"am {when.strftime('%d.%m.%Y')} ab {clock} Uhr"
    if days == 0:
        return f"at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    if days < 7:
        return f"on {_DAYS['en'][when.weekday()]} at {clock}"
    return f"on {when.strftime('%Y-%m-%d')} at {clock}"


def wait_phrase(language: str, seconds: float | None) -> str:
    if seconds is None:
        return "unbekannt" if language == "de" else "unknown"
    minutes = max(1, round(seconds / 60))
    if language == "de":
        return "etwa 1 Minute" if minutes == 1 else f"etwa {minutes} Minuten"
    return "about 1 minute" if minutes == 1 else f"about {minutes} minutes"
