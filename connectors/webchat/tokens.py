"""Visitor tokens: `base64url(visitor_id.issued_at.seen_at.origin_tag).base64url(hmac_sha256)`.

The token is the visitor's only credential, kept in the browser's localStorage. It is bound
to the origin of the page that got it (`origin_tag`, a hash of the origin) and expires
`token_ttl` after its last use (`seen_at`; each use mints a renewed one). `issued_at` is
when the visitor first came and never changes. A token that does not verify, comes from
another origin or has expired is refused, and the visitor gets a fresh identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

_VISITOR = re.compile(r"^v_[A-Za-z0-9_-]{16,64}$")
MAX_TOKEN_CHARS = 512


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_visitor_id() -> str:
    return "v_" + secrets.token_urlsafe(16)


def origin_tag(origin: str | None) -> str:
    """A short, dot-free digest of the (normalised) origin a token is bound to."""
    canonical = (origin or "").strip().rstrip("/").lower()
    return _b64(hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()[:12])


@dataclass(frozen=True, slots=True)
class VisitorToken:
    visitor_id: str
    issued_at: int
    seen_at: int
    origin_tag: str


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"switchboard-webchat-v2:" + payload, hashlib.sha256).digest()

    def mint(
        self,
        visitor_id: str,
        issued_at: int | None = None,
        origin: str | None = None,
        seen_at: int | None = None,
    ) -> str:
        at = int(time.time()) if issued_at is None else issued_at
        seen = at if seen_at is None else seen_at
        payload = f"{visitor_id}.{at}.{seen}.{origin_tag(origin)}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: object) -> VisitorToken | None:
        """The token's content when it is genuine (signed with our key), else None. Whether
        it is still valid here (origin, age) is `VisitorToken`'s caller's decision."""
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
            visitor_id, issued, seen, tag = payload.decode("ascii").split(".")
            issued_at, seen_at = int(issued), int(seen)
        except (UnicodeDecodeError, ValueError):
            return None
        if not _VISITOR.match(visitor_id):
            return None
        return VisitorToken(visitor_id, issued_at, seen_at, tag)
