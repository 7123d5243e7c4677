"""Lease rows in the store (issue 11): the arbiter of leases across instances.

Every lease holding is a row `(name, holder, token, expires_at)` whose expiry is computed and
compared with the DATABASE server's clock, never the caller's. `lease_take` is one
transaction on the locked row, so of several instances asking at once exactly one gets it.
The row also keeps the highest fencing token ever issued for the name, whoever issued it
(Redis or the store), so a token the store issues is always greater than every earlier one:
max(row, fenced writes seen) + 1. See gateway/coord/leases.py (`StoreBackedLeases`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class LeaseRows(ABC):
    """Leases with fencing tokens held in the store."""

    @abstractmethod
    async def lease_take(
        self, name: str, holder: str, ttl: float, token: int | None = None
    ) -> tuple[bool, int]:
        """Take `name` for `holder` for `ttl` seconds unless another holder's row is live.
        `token`: the one Redis issued (accepted only if greater than every token the store
        has seen), None: the store issues the next one. Returns (taken, token): the holding's
        token, or when refused the highest token seen."""

    @abstractmethod
    async def lease_renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        """Extend the holding to now + `ttl`; False when it is no longer `holder`'s."""

    @abstractmethod
    async def lease_release(self, name: str, holder: str, token: int) -> None:
        """End the holding (a no-op when it is no longer theirs); the token is kept."""

    @abstractmethod
    async def lease_advance(self, name: str, floor: int) -> None:
        """Record that `floor` was issued: later tokens are greater."""

    @abstractmethod
    async def lease_row(self, name: str) -> tuple[str | None, int, float] | None:
        """(holder or None, highest token, seconds left by the database's clock)."""
