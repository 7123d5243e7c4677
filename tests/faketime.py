"""The file libfaketime reads a daemon's wall clock from (FAKETIME_TIMESTAMP_FILE, read
on every call with FAKETIME_NO_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path


def write_clock(path: Path, spec: str) -> None:
    """Set the clock in one atomic step. A plain rewrite truncates the file first: a daemon
    reading it in that instant gets no fake time at all, i.e. today's real date, months
    past the test's day, and its SLA timers breach everything that is running."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{spec}\n")
    os.replace(tmp, path)
