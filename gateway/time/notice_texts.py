"""What the gateway tells a customer about time by itself (issue 12): the out-of-hours reply
and the long-wait message. The texts are in the Babel catalogs with every other customer
text (gateway/locale, keys `notice.*`; `texts:` overrides them), weekday names and dates
formatted by Babel in the contact's language; `notices.closed` / `notices.wait` still
override the whole message per language."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel.dates import format_date
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.i18n import Texts

Language = Literal["de", "en"]


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

    def closed_text(self, texts: Texts, language: str, opens: str) -> str:
        template = self.closed.get(language) or texts.template("notice.closed", language)  # type: ignore[call-overload]
        return str(template).format(opens=opens)

    def wait_text(self, texts: Texts, language: str, position: int, wait: float | None) -> str:
        template = self.wait.get(language) or texts.template("notice.wait", language)  # type: ignore[call-overload]
        return str(template).format(position=position, wait=wait_phrase(texts, language, wait))


def language_of(tag: object) -> str:
    """`de`, `de-AT` → "de"; anything else (or nothing) → "en"."""
    if isinstance(tag, str) and tag.strip().lower()[:2] == "de":
        return "de"
    return "en"


def opens_phrase(
    texts: Texts, language: str, opens_at: float | None, now: float, zone: ZoneInfo | None
) -> str:
    """'at 08:00' today, 'tomorrow at 08:00', 'on Monday at 08:00' (in the queue's zone)."""
    if opens_at is None:
        return texts.text("notice.opens.later", language)
    tz = zone or ZoneInfo("UTC")
    when = dt.datetime.fromtimestamp(opens_at, tz)
    today = dt.datetime.fromtimestamp(now, tz).date()
    clock = when.strftime("%H:%M")
    days = (when.date() - today).days
    if days == 0:
        return texts.text("notice.opens.today", language, time=clock)
    if days == 1:
        return texts.text("notice.opens.tomorrow", language, time=clock)
    if days < 7:
        weekday = format_date(when.date(), "EEEE", locale=language)
        return texts.text("notice.opens.weekday", language, weekday=weekday, time=clock)
    date = format_date(when.date(), "medium", locale=language)
    return texts.text("notice.opens.date", language, date=date, time=clock)


def wait_phrase(texts: Texts, language: str, seconds: float | None) -> str:
    if seconds is None:
        return texts.text("notice.wait.unknown", language)
    minutes = max(1, round(seconds / 60))
    if minutes == 1:
        return texts.text("notice.wait.one_minute", language)
    return texts.text("notice.wait.minutes", language, minutes=minutes)
