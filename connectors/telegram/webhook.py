"""Telegram webhook requests: the secret token check, size limit and JSON body."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from connectors.http import MalformedJson, Rejected, loads_json, token_bytes

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def secret_matches(request: web.Request, secret: str) -> bool:
    given = request.headers.get(SECRET_HEADER)
    if given is None:
        return False
    return hmac.compare_digest(token_bytes(given), secret.encode("utf-8"))


async def read_update(request: web.Request, *, secret: str, limit: int) -> dict[str, Any]:
    """The update a verified webhook request carries. Raises `Rejected` (403, 413, 400)."""
    if not secret_matches(request, secret):
        raise Rejected(403, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            raise Rejected(413, f"body larger than {limit} bytes")
    try:
        data = loads_json(body)
    except MalformedJson as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise Rejected(400, "not a Telegram update")
    return data
