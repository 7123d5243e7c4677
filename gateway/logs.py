"""Structured logs: one JSON object per line on stderr; quiet when healthy.

Extra fields passed with `extra={...}` become keys. Message bodies and secrets are never
passed to info-level log calls.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from gateway.store.outage import OutageFilter

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


NOISY = ("aiohttp.access", "httpx", "telegram", "twilio")


def handler(stream: Any = None) -> logging.Handler:
    """The production handler: JSON lines on `stream` (stderr by default)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter())
    # A lost store is logged once per interval by the store itself, not by every loop.
    out.addFilter(OutageFilter())
    return out


class ClientFaults(logging.Filter):
    """aiohttp logs a malformed request (a NUL in a header, a broken request line) as an
    error with a traceback; it is the client's fault and already answered 400, so a hostile
    client must not fill the log with it. Kept at debug, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg = f"malformed request refused: {exc.message}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def install_filters() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientFaults) for f in server.filters):
        server.addFilter(ClientFaults())


def setup(level: str = "INFO") -> None:
    install_filters()
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(level.upper())
    # Library chatter stays below warning unless asked for.
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
