"""Settings of an email channel: one IMAP mailbox in, one SMTP relay out."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import ConnectorSettings

# RFC 2177: a client should re-issue IDLE at least every 29 minutes.
MAX_IDLE_SECONDS = 29 * 60


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImapSettings(_Strict):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    username: str
    password: str = Field(repr=False)
    tls: bool = True
    starttls: bool = False
    mailbox: str = "INBOX"
    # After a message was handed to the core: move it there (else it is only flagged \Seen).
    move_to: str | None = None
    # Seconds between polls when the server has no IDLE (or idle is off).
    poll_interval: float = Field(default=60.0, gt=0)
    idle: bool = True
    # Seconds one IDLE lasts before it is re-issued; must stay below 29 minutes.
    idle_timeout: float = Field(default=25 * 60, gt=0, lt=MAX_IDLE_SECONDS)
    # Seconds any single IMAP command may take.
    timeout: float = Field(default=30.0, gt=0)
    # Seconds before a message whose submit failed is tried again (doubling, up to 15 min).
    retry_interval: float = Field(default=30.0, gt=0)
    # Messages fetched per UID FETCH round trip.
    batch_size: int = Field(default=20, ge=1, le=500)

    @model_validator(mode="after")
    def _tls_modes(self) -> ImapSettings:
        if self.tls and self.starttls:
            raise ValueError("imap: choose either tls (implicit TLS) or starttls, not both")
        return self


class SmtpSettings(_Strict):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls: bool = False
    starttls: bool = True
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _tls_modes(self) -> SmtpSettings:
        if self.tls and self.starttls:
            raise ValueError("smtp: choose either tls (implicit TLS) or starttls, not both")
        return self


class ParseSettings(_Strict):
    """Mail is parsed in worker processes, never on the event loop: one hostile mail costs
    at most this much, then it is quarantined."""

    # Worker processes per channel (default: the machine's CPU count).
    workers: int | None = Field(default=None, ge=1, le=64)
    # CPU seconds one mail may take to parse.
    cpu_seconds: float = Field(default=10.0, gt=0, le=600)
    # Address space of a worker process, in MB (the interpreter itself takes ~100 MB).
    memory_mb: int = Field(default=512, ge=192, le=65536)

    @property
    def pool_size(self) -> int:
        return self.workers or os.cpu_count() or 1


class EmailSettings(ConnectorSettings):
    imap: ImapSettings
    smtp: SmtpSettings
    # Our support address, e.g. support@example.com (plus-addresses derive from it).
    address: str
    from_name: str | None = None
    reply_to: str | None = None
    # Domain part of the Message-IDs we generate (recognises our own mail coming back).
    message_id_domain: str | None = None
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    parse: ParseSettings = Field(default_factory=ParseSettings)

    @field_validator("address", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        local, sep, domain = value.rpartition("@")
        if not sep or not local or not domain or any(c.isspace() for c in value):
            raise ValueError(f"not an email address: {value!r}")
        return value

    @property
    def id_domain(self) -> str:
        """The domain of our generated Message-IDs."""
        return (self.message_id_domain or self.address.rpartition("@")[2]).lower()
