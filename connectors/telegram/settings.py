"""Settings of a Telegram bot channel (the YAML block of one channel)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.base import ConnectorSettings


class TelegramSettings(ConnectorSettings):
    # The bot token from @BotFather, e.g. ${TELEGRAM_TOKEN}.
    token: str = Field(pattern=r"^\d+:[A-Za-z0-9_-]+$")
    # polling: getUpdates long polling; webhook: Telegram posts to our public URL.
    mode: Literal["polling", "webhook"] = "polling"
    # Public base URL Telegram posts to (webhook mode); defaults to the gateway's public_url.
    webhook_base_url: str | None = None
    # Sent back by Telegram in X-Telegram-Bot-Api-Secret-Token; required in webhook mode.
    webhook_secret: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,256}$")
    api_base_url: str = "https://api.telegram.org"
    poll_timeout: int = Field(default=25, ge=0, le=50)
    request_timeout: float = Field(default=10.0, gt=0)
    # Inbound files larger than this are recorded by name, type and size only.
    max_file_bytes: int = Field(default=20 * 1024 * 1024, ge=0)
    # Only answer people in private chats with the bot (groups are ignored).
    private_chats_only: bool = True
    # Flood limits: messages per second to one chat, and overall.
    per_chat_rate: float = Field(default=1.0, gt=0)
    global_rate: float = Field(default=30.0, gt=0)
    # If the limiter would hold a message longer than this, hand it back as `retry`.
    max_send_wait: float = Field(default=10.0, ge=0)
    drop_pending_updates: bool = False

    @field_validator("webhook_base_url", "api_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.mode == "webhook" and not self.webhook_secret:
            raise ValueError("webhook mode needs webhook_secret")
        return self
