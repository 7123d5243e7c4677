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


NOISY = ("aiohttp.access", "aiosqlite", "httpx", "telegram", "twilio")


def handler(stream: Any = None) -> logging.Handler:
    """The production handler: JSON lines on `stream` (stderr by default)."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter())
    return out


def setup(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(level.upper())
    # Library chatter stays below warning unless asked for.
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
