"""Parsing mail off the event loop: a `WorkerPool` running `parse_email` with the
channel's limits (`parse: {workers, cpu_seconds, memory_mb}`).

Used by the live connector, by `parse_raw` (a quarantined mail read again) and by the
backfill command, so a mail costs the same wherever it is read."""

from __future__ import annotations

import logging
from typing import Any

from connectors.email.parse import BounceReport, ParsedEmail, parse_email
from connectors.email.settings import EmailSettings
from connectors.procpool import LimitExceeded, PoolUnavailable, TaskFailed, WorkerPool

__all__ = ["LimitExceeded", "MailParser", "PoolUnavailable", "TaskFailed", "parse_in_worker"]


def parse_in_worker(raw: bytes, options: dict[str, Any]) -> ParsedEmail | BounceReport:
    """What a worker runs: the parsed mail without its raw bytes (the caller has them)."""
    parsed = parse_email(raw, **options)
    parsed.raw = b""
    return parsed


class MailParser:
    """One email channel's parser: its limits, its worker processes."""

    def __init__(
        self,
        settings: EmailSettings,
        name: str = "email",
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        p = settings.parse
        self.options: dict[str, Any] = {
            "max_attachment_bytes": settings.max_attachment_bytes,
            "our_address": settings.address,
            "message_id_domain": settings.id_domain,
        }
        self.pool = WorkerPool(
            "connectors.email.parsepool:parse_in_worker",
            workers=p.pool_size,
            cpu_seconds=p.cpu_seconds,
            memory_mb=p.memory_mb,
            name=f"email-{name}-parse",
            log=log,
        )

    async def parse(self, raw: bytes) -> ParsedEmail | BounceReport:
        """The parsed mail. Raises `LimitExceeded` (the mail is too costly to read: keep it
        in quarantine), `TaskFailed` (the parser broke on it: the same), or
        `PoolUnavailable` (no worker: leave the mail for later)."""
        parsed: ParsedEmail | BounceReport = await self.pool.run(raw, self.options)
        parsed.raw = raw
        return parsed

    async def close(self) -> None:
        await self.pool.close()
