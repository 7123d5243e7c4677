"""The store cannot be reached: what callers see, and what the log says about it.

A backend that loses its server (PostgreSQL stopped, the network gone) raises
`StoreUnavailable` from the operation that could not run. The transaction of that operation
did not commit, or (a connection lost during COMMIT) its outcome is unknown: callers answer
"try again" (HTTP 503 with Retry-After, a mail left unseen, a Telegram offset not moved) and
the retry is deduplicated by the provider's message id, so an accepted message is stored once.

`Outage` keeps the log quiet: one line when the store is lost, one per `interval` while it
stays lost, one when it is back. The loops that meet the outage meanwhile (routing, outbox,
timers, KPIs) are kept out of the log by `OutageFilter`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from connectors.base import Unavailable

log = logging.getLogger("switchboard.store")

# What an HTTP client is told to wait before trying again (seconds).
RETRY_AFTER = 5
# How often, at most, a lasting outage is logged again (seconds).
LOG_INTERVAL = 30.0


class StoreUnavailable(Unavailable):
    """The store's server cannot be reached now; try again later. An `Unavailable` of the
    connector contract: a connector that meets it through `ctx.kv` (a cursor it could not
    read or write) waits and tries again, as when `submit` raises it."""


class Outage:
    """Whether the store is reachable, from the outcome of the operations that run."""

    def __init__(
        self,
        what: str = "store",
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.interval = interval
        self.clock = clock
        self.reason: str | None = None  # None: reachable (as far as is known)
        self._since = 0.0
        self._logged = 0.0
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        """An operation could not reach the server."""
        now = self.clock()
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:300]
        if self.reason is None:
            self.reason, self._since, self._logged, self._failures = reason, now, now, 1
            log.error(f"{self.what} unreachable", extra={"error": reason})
            return
        self.reason = reason
        self._failures += 1
        if now - self._logged >= self.interval:
            self._logged = now
            log.error(
                f"{self.what} still unreachable",
                extra={
                    "error": reason,
                    "for_seconds": round(now - self._since, 1),
                    "failed_operations": self._failures,
                },
            )

    def succeeded(self) -> None:
        """An operation reached the server."""
        if self.reason is None:
            return
        now = self.clock()
        log.warning(
            f"{self.what} reachable again",
            extra={
                "down_seconds": round(now - self._since, 1),
                "failed_operations": self._failures,
            },
        )
        self.reason = None


def is_outage(exc: BaseException | None) -> bool:
    """`exc`, or what it was raised from, is a lost store."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, StoreUnavailable):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class OutageFilter(logging.Filter):
    """Drops the tracebacks that a lost store causes in the background loops, and asyncpg's
    own warning for each failed reconnect of its pool: `Outage` already logs the outage
    once per interval, and each loop retries by itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        exc = record.exc_info[1]
        if record.name.startswith("asyncpg.") and isinstance(exc, OSError | ConnectionError):
            return False
        if record.name.startswith("asyncpg.") and type(exc).__module__.startswith("asyncpg"):
            return False
        return not is_outage(exc)
