"""One-click links for email surveys: the response id signed with HMAC-SHA256, so a link
answers only the question it was made for, and a changed link is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _mac(secret: bytes, response_id: str) -> str:
    digest = hmac.new(secret, b"survey:" + response_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: bytes, response_id: str) -> str:
    return f"{response_id}.{_mac(secret, response_id)}"


def verify(secret: bytes, token: str) -> str | None:
    """The response id of a token made by `sign` with this secret, else None."""
    response_id, _, mac = token.rpartition(".")
    if not response_id or not mac:
        return None
    if not hmac.compare_digest(mac, _mac(secret, response_id)):
        return None
    return response_id
