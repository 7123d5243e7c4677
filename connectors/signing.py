"""Standard Webhooks signatures (https://www.standardwebhooks.com/), shared: the api connector
signs its outbound POSTs with them and the core signs its event webhooks.

`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the
base64 part of a `whsec_` secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time


class InvalidSecret(ValueError):
    pass


class InvalidSignature(ValueError):
    pass


def decode_secret(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise InvalidSecret("a signing secret starts with whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the part after whsec_ is not valid base64") from exc
    if len(key) < 16:
        raise InvalidSecret("a signing secret needs at least 16 bytes of key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key: bytes, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, msg_id, ts, body),
    }


def verify(
    key: bytes, hdrs: dict[str, str], body: bytes, tolerance: float = 300, now: float | None = None
) -> None:
    """Raise `InvalidSignature` unless one v1 signature matches and the time is fresh."""
    try:
        msg_id, ts_text, sigs = (
            hdrs["webhook-id"],
            hdrs["webhook-timestamp"],
            hdrs["webhook-signature"],
        )
        ts = int(ts_text)
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("missing or malformed webhook headers") from exc
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = sign(key, msg_id, ts, body).encode()
    for candidate in sigs.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise InvalidSignature("no matching signature")
