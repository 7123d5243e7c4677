"""Portal links: `<contact id>.<epoch>.<expiry>.<mac>`, the MAC an HMAC-SHA256 over the rest.

The contact id is the link's whole scope; the expiry (epoch seconds) bounds it in time; the
epoch is the contact's portal epoch when the link was made: revoking the contact's links
bumps it (gateway/store: `portal_revoke`), and every link made before stops working. Pure
functions, no I/O: the caller reads the epoch and the clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

# What a link that does not work is: `forged` (changed, or signed with another secret: 403)
# or `expired` / `revoked` (it was good once: 410).
Refusal = Literal["forged", "expired", "revoked"]


@dataclass(frozen=True, slots=True)
class Link:
    contact_id: str
    epoch: int
    expires: int


def _mac(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, b"portal:" + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: bytes, contact_id: str, epoch: int, expires: int) -> str:
    if not secret:
        raise ValueError("no portal secret")
    if "." in contact_id or "/" in contact_id or not contact_id:
        raise ValueError(f"not a contact id: {contact_id!r}")
    payload = f"{contact_id}.{epoch}.{expires}"
    return f"{payload}.{_mac(secret, payload)}"


def read(secret: bytes, token: str) -> Link | None:
    """The link a token made by `sign` with this secret names, else None (forged). Neither
    expiry nor epoch is checked here: see `check`."""
    if not secret or len(token) > 512:
        return None
    parts = token.rsplit(".", 3)
    if len(parts) != 4:
        return None
    contact_id, epoch, expires, mac = parts
    payload = f"{contact_id}.{epoch}.{expires}"
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        return None
    if not contact_id or not epoch.isdigit() or not expires.isdigit():
        return None
    return Link(contact_id, int(epoch), int(expires))


def check(link: Link | None, now: float, current_epoch: int | None) -> Refusal | None:
    """Why a link read by `read` does not work now (None: it works). `current_epoch`: the
    contact's portal epoch now (None: the contact is gone, e.g. erased)."""
    if link is None:
        return "forged"
    if now >= link.expires:
        return "expired"
    if current_epoch is None or current_epoch != link.epoch:
        return "revoked"
    return None
