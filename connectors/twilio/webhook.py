"""Twilio webhooks: size limit, form parsing, signature check, TwiML answer, and turning
inbound-message and status-callback parameters into the core's vocabulary."""

from __future__ import annotations

import json
import mimetypes
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import MultiDict

from connectors.base import DeliveryReceipt
from connectors.http import MalformedJson, Rejected, loads_json

from .errors import error_reason
from .signature import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    SignatureVerifier,
    signed_url,
    undecodable,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twiml_response() -> web.Response:
    return web.Response(text=EMPTY_TWIML, content_type="text/xml", charset="utf-8")


async def read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            raise Rejected(413, f"body larger than {limit} bytes")
    return bytes(body)


def parse_form(body: bytes, *, keep_undecodable: bool = False) -> MultiDict[str]:
    """The form's parameters. With `keep_undecodable`, bytes that are not UTF-8 are kept
    as lone surrogates (`surrogateescape`) instead of refusing the form."""
    errors = "surrogateescape" if keep_undecodable else "strict"
    try:
        pairs = parse_qsl(
            body.decode("utf-8", errors),
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors=errors,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise Rejected(400, f"malformed form body: {exc}") from exc
    return MultiDict(pairs)


async def verified_params(
    request: web.Request,
    *,
    verifier: SignatureVerifier,
    public_base: str | None,
    account_sid: str,
    limit: int,
) -> MultiDict[str]:
    """The webhook's parameters once the request is proven to come from Twilio. A form
    value (or name) that is not UTF-8 is verified over its bytes and returned with them as
    lone surrogates (see `not_utf8`): the caller decides what to keep.

    Raises `Rejected`: 413 oversized, 403 unsigned or forged, 400 malformed."""
    body = await read_limited(request, limit)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Rejected(403, "missing X-Twilio-Signature")
    base = public_base or f"{request.scheme}://{request.host}"
    url = signed_url(base, request.rel_url.raw_path, request.rel_url.raw_query_string)
    settings_header = request.headers.get(SIGNATURE_SETTINGS_HEADER)
    if request.content_type == "application/json":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(400, "JSON body is not UTF-8") from exc
        if not verifier.verify(url, text, signature, settings_header):
            raise Rejected(403, "invalid X-Twilio-Signature")
        try:
            data = loads_json(text)
        except MalformedJson as exc:
            raise Rejected(400, f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise Rejected(400, "JSON body is not an object")
        params: MultiDict[str] = MultiDict(
            (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()
        )
    elif request.content_type in ("application/x-www-form-urlencoded", ""):
        params = parse_form(body, keep_undecodable=True)
        if not verifier.verify(url, params, signature, settings_header):
            raise Rejected(403, "invalid X-Twilio-Signature")
    else:
        raise Rejected(415, f"unsupported content type {request.content_type}")
    sid = params.get("AccountSid")
    if sid is not None and sid != account_sid:
        raise Rejected(403, "webhook for another Twilio account")
    return params


def not_utf8(params: MultiDict[str]) -> str | None:
    """The first parameter whose name or value was not UTF-8, if any."""
    for name, value in params.items():
        if undecodable(name) or undecodable(value):
            return name.encode("utf-8", "backslashreplace").decode()
    return None


def form_bytes(params: MultiDict[str]) -> bytes:
    """The parameters form-encoded again, bytes that were not UTF-8 as they came."""
    return urlencode(list(params.items()), errors="surrogateescape").encode()


def require(params: MultiDict[str], *names: str) -> list[str]:
    values = []
    for name in names:
        value = params.get(name, "").strip()
        if not value:
            raise Rejected(400, f"missing {name}")
        values.append(value)
    return values


def message_sid(params: MultiDict[str]) -> str:
    sid = (params.get("MessageSid") or params.get("SmsMessageSid") or "").strip()
    if not sid:
        raise Rejected(400, "missing MessageSid")
    return sid


def media_items(params: MultiDict[str]) -> list[tuple[str, str]]:
    """[(url, content type)] from NumMedia / MediaUrlN / MediaContentTypeN."""
    try:
        count = int(params.get("NumMedia", "0") or 0)
    except ValueError as exc:
        raise Rejected(400, "NumMedia is not a number") from exc
    items = []
    for i in range(max(0, min(count, 20))):
        url = params.get(f"MediaUrl{i}")
        if url:
            items.append((url, params.get(f"MediaContentType{i}", "application/octet-stream")))
    return items


def media_name(url: str, content_type: str, index: int) -> str:
    last = url.rstrip("/").rsplit("/", 1)[-1] or f"media{index}"
    ext = mimetypes.guess_extension(content_type) or ""
    return last if "." in last else last + ext


_RECEIPT_STATUS: dict[str, Literal["delivered", "read", "failed"]] = {
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}


def delivery_receipt(params: MultiDict[str]) -> DeliveryReceipt | None:
    """A status callback as a receipt; None for intermediate states (queued, sent ...)."""
    sid = message_sid(params)
    (status,) = require(params, "MessageStatus")
    mapped = _RECEIPT_STATUS.get(status.lower())
    if mapped is None:
        return None
    reason = None
    if mapped == "failed":
        reason = error_reason(params.get("ErrorCode"), params.get("ErrorMessage")) or (
            f"twilio status {status}"
        )
    return DeliveryReceipt(
        provider_message_id=sid, status=mapped, reason=reason, at=datetime.now(UTC)
    )
