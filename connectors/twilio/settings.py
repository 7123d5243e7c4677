"""Settings of the Twilio SMS and WhatsApp channels (the YAML block of one channel)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import ConnectorSettings

from .phone import to_e164

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class WhatsAppTemplate(BaseModel):
    """An approved WhatsApp template (Twilio Content API), sent when the 24-hour window is
    closed. Variable values may contain `{text}`, `{sender_name}` and `{conversation_id}`,
    replaced by the outbound message's own values."""

    model_config = ConfigDict(extra="forbid")

    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    variables: dict[str, str] = Field(default_factory=dict)


class TwilioSmsSettings(ConnectorSettings):
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    # Signs the webhooks; also the REST password unless an API key is given.
    auth_token: str = Field(min_length=1)
    # Optional API key for the REST API (webhooks are still signed with the auth token).
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    api_key_secret: str | None = None
    # The channel's own number (E.164), or a Messaging Service that picks one.
    from_number: str | None = None
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    # Public base URL Twilio calls (and signs); defaults to the gateway's public_url.
    webhook_base_url: str | None = None
    api_base_url: str = "https://api.twilio.com"
    # Ask Twilio for delivery status callbacks on outbound messages.
    status_callbacks: bool = True
    # Inbound media larger than this is recorded by URL and type only.
    max_media_bytes: int = Field(default=5 * 1024 * 1024, ge=0)
    request_timeout: float = Field(default=15.0, gt=0)

    @field_validator("from_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        number = to_e164(value.removeprefix("whatsapp:"))
        if number is None:
            raise ValueError(f"not a valid E.164 phone number: {value!r}")
        return number

    @field_validator("webhook_base_url", "api_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _sender_and_key(self) -> TwilioSmsSettings:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("set from_number or messaging_service_sid")
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("api_key_sid and api_key_secret go together")
        return self

    def rest_auth(self) -> tuple[str, str]:
        if self.api_key_sid and self.api_key_secret:
            return self.api_key_sid, self.api_key_secret
        return self.account_sid, self.auth_token


class TwilioWhatsAppSettings(TwilioSmsSettings):
    # Sent instead of free text when the customer's 24-hour window is closed.
    whatsapp_template: WhatsAppTemplate | None = None
    session_window_hours: float = Field(default=24.0, gt=0)

    def template_variables(self, values: dict[str, Any]) -> dict[str, str]:
        if self.whatsapp_template is None:
            return {}

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(values[name]) if name in values else match.group(0)

        return {
            key: _PLACEHOLDER.sub(fill, template)
            for key, template in self.whatsapp_template.variables.items()
        }
