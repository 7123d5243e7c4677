"""THE ONE BUSINESS RULE the PostgreSQL store still copies from the SQLite store — kept
here, and only here, until it moves to gateway/domain/ (the other rules are there now).

Delivery receipts only move a message's status forward (gateway/store/sqlite/outbox.py,
`_STATUS_ORDER`): a `delivered` after `read` changes nothing, a failure is final.
"""

from __future__ import annotations

_STATUS_ORDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def receipt_applies(current: str | None, status: str) -> bool:
    """A receipt changes a message's status unless it failed already or it goes back."""
    if current == "failed":
        return False
    return status == "failed" or _STATUS_ORDER.get(status, 0) > _STATUS_ORDER.get(current or "", 0)
