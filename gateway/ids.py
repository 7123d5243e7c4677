"""Time-ordered, URL-safe identifiers: sortable, so they double as pagination cursors."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """`<prefix>_<12 hex ms timestamp><12 hex random>`; lexicographic order follows time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"
