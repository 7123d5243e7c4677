"""Visitor tokens: `base64url(visitor_id.issued_at).base64url(hmac_sha256)`.

The token is the visitor's only credential, kept in the browser's localStorage; a token
that does not verify is ignored and the visitor gets a fresh identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time

_VISITOR = re.compile(r"^v_[A-Za-z0-9_-]{16,64}$")
MAX_TOKEN_CHARS = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(16)


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"switchboard-webchat-v1:" + payload, hashlib.sha256).digest()

    def mint(self, visitor_id: str, issued_at: int | None = None) -> str:
        at = int(time.time()) if issued_at is None else issued_at
        payload = f"{visitor_id}.{at}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: object) -> tuple[str, int] | None:
        """(visitor_id, issued_at) for a genuine token, else None."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            return None
        body, sep, mac = token.partition(".")
        if not sep:
            return None
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            visitor_id, _, at = payload.decode("ascii").rpartition(".")
            issued_at = int(at)
        except (UnicodeDecodeError, ValueError):
            return None
        if not _VISITOR.match(visitor_id):
            return None
        return visitor_id, issued_at
