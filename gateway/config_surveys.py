"""Configuration of the customer surveys (`surveys:`) and of the texts (`texts:`).

Kept apart from gateway/config.py, which only hangs them on the root model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from gateway.i18n import catalog


def _seconds(value: Any) -> float:
    from gateway.config import parse_duration  # the root config module imports this one

    return parse_duration(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_texts(value: dict[str, str]) -> dict[str, str]:
    known = catalog("en")
    for key, text in value.items():
        if key not in known:
            raise ValueError(f"unknown text {key!r}; known: {', '.join(sorted(known))}")
        try:
            text.format_map(
                {
                    k: ""
                    for k in ("name", "reference", "subject", "low", "high", "url", "date", "count")
                }
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"text {key!r} is not a valid template ({exc})") from None
    return value


class TextsConfig(_Strict):
    """Texts for customers: the shipped German and English catalogs, overridden per key."""

    default_language: Literal["de", "en"] = Field(
        "en", description="For a contact whose language nobody told us."
    )
    de: dict[str, str] = Field(default_factory=dict, description="Overrides, key → text.")
    en: dict[str, str] = Field(default_factory=dict, description="Overrides, key → text.")

    _check_de = field_validator("de")(_known_texts)
    _check_en = field_validator("en")(_known_texts)

    def overrides(self) -> dict[str, dict[str, str]]:
        return {"de": dict(self.de), "en": dict(self.en)}


class SurveyKindConfig(_Strict):
    enabled: bool = False
    queues: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Opt-in per queue: the queues whose resolved conversations are asked "
        "('*': all).",
    )

    def covers(self, queue: str) -> bool:
        return self.enabled and ("*" in self.queues or queue in self.queues)


class NpsConfig(SurveyKindConfig):
    interval: float = Field(
        90 * 86400.0, gt=0, description="At most one NPS question per contact in this time."
    )

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return _seconds(value)


class SurveyTemplate(_Strict):
    """A WhatsApp template (Twilio Content API) for a survey outside the 24-hour window."""

    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    variables: dict[str, str] = Field(
        default_factory=dict, description="Values may use {text} and {conversation_id}."
    )


class SurveysConfig(_Strict):
    """Customer surveys after resolution, asked in the customer's own channel.

    Of the kinds that apply to a resolved conversation one is asked: NPS when the contact
    was not asked within `nps.interval`, else CES, else CSAT."""

    csat: SurveyKindConfig = Field(
        default_factory=lambda: SurveyKindConfig(enabled=True),
        description="Satisfaction 1-5 after resolution.",
    )
    nps: NpsConfig = Field(default_factory=NpsConfig, description="Net promoter 0-10.")  # type: ignore[arg-type]
    ces: SurveyKindConfig = Field(
        default_factory=SurveyKindConfig, description="Customer effort 1-7."
    )
    delay: float = Field(3600.0, ge=0, description="Asked this long after the resolution.")
    stale_after: float = Field(
        86400.0,
        gt=0,
        description="A resolution not asked about within delay + this (the gateway was "
        "down) is not asked about any more.",
    )
    answer_window: float = Field(
        7 * 86400.0, gt=0, description="A reply this long after the question still answers it."
    )
    comment: bool = Field(True, description="Offer a free-text follow-up after the score.")
    comment_window: float = Field(
        600.0,
        ge=0,
        description="On SMS, WhatsApp and Telegram: after a score without a comment, the "
        "customer's next message within this time is the comment (0: never).",
    )
    max_per_contact: int = Field(1, ge=1, description="Surveys per contact per `window`.")
    window: float = Field(7 * 86400.0, gt=0)
    max_automatic: int = Field(
        5,
        ge=1,
        description="Loop guard: no survey to a contact that got this many automatic "
        "messages within `window`.",
    )
    channels: list[str] | None = Field(None, description="Only these channels (default: all).")
    secret: SecretStr | None = Field(
        None,
        description="Signs the email links (HMAC); default: a random one kept in the store.",
    )
    whatsapp_template: SurveyTemplate | None = Field(
        None,
        description="Sent when the WhatsApp 24-hour window is closed; without it no survey "
        "goes to WhatsApp then.",
    )

    @field_validator(
        "delay", "stale_after", "answer_window", "window", "comment_window", mode="before"
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        return _seconds(value)

    def enabled_kinds(self) -> list[str]:
        return [k for k in ("nps", "ces", "csat") if getattr(self, k).enabled]

    def queues(self) -> set[str] | None:
        """The queues some enabled kind covers (None: all)."""
        found: set[str] = set()
        for kind in self.enabled_kinds():
            queues = getattr(self, kind).queues
            if "*" in queues:
                return None
            found.update(queues)
        return found
