"""Configuration of the customer portal (`portal:`); hung on the root model by
gateway/config.py."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MAX_TTL = 90 * 86400.0


def _seconds(value: Any) -> float:
    from gateway.config import parse_duration  # the root config module imports this one

    return parse_duration(value)


class PortalConfig(BaseModel):
    """Customers see their own conversations through a signed link, and answer them."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Issue portal links and serve /portal/.")
    link_ttl: float = Field(
        7 * 86400.0,
        gt=0,
        le=MAX_TTL,
        description="How long a link stays valid (e.g. 7d; at most 90d).",
    )
    secret: SecretStr | None = Field(
        None,
        description="Signs the links (HMAC-SHA256); default: a random one kept in the store. "
        "Changing it invalidates every link given out.",
    )
    max_reply_chars: int = Field(
        5000, ge=1, le=100_000, description="The longest answer a customer may send."
    )
    timezone: str = Field(
        "UTC", description="IANA zone the page shows times in, e.g. Europe/Berlin."
    )
    answers_per_hour: int = Field(
        30, ge=1, description="Answers one contact may send through the portal per hour."
    )

    @field_validator("link_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return _seconds(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/Berlin)"
            ) from None
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the portal secret must be at least 16 characters")
        return value
