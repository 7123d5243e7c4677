"""HTTP helpers shared by webhook-receiving connectors and the core API.

Every error is `{"error": {"code": ..., "message": ...}}` with a precise 4xx, never a
traceback; bodies are read with a size limit and decoded strictly.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aiohttp import web


class ApiError(web.HTTPException):
    """An HTTP error that renders as the JSON error envelope."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        self.status_code = status
        body: dict[str, Any] = {"code": code, "message": message}
        if details is not None:
            body["details"] = details
        super().__init__(
            text=json.dumps({"error": body}, ensure_ascii=False), content_type="application/json"
        )
        self.code = code
        self.error_message = message


def fail(status: int, code: str, message: str, details: Any = None) -> NoReturn:
    raise ApiError(status, code, message, details)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, or 413 when it is larger than `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        fail(413, "payload_too_large", f"request body exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            fail(413, "payload_too_large", f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(400, "invalid_encoding", f"request body is not valid UTF-8 (byte {exc.start})")


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The parsed JSON body: 413 too large, 400 not UTF-8 / not JSON."""
    text = decode_utf8(await read_body(request, max_bytes))
    if not text.strip():
        fail(400, "invalid_json", "request body is empty; a JSON object is expected")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(
            400,
            "invalid_json",
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def validation_details(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as `[{"field": "a.b[0]", "message": ...}]`."""
    out = []
    for err in errors:
        path = ""
        for part in err.get("loc", ()):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append({"field": path or "(body)", "message": str(err.get("msg", "invalid"))})
    return out


_CODES = {
    400: "bad_request",
    403: "forbidden",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


class Rejected(Exception):
    """A webhook refused with an HTTP status; nothing was stored. Raised deep in request
    parsing, turned into the JSON error envelope where the handler answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> web.Response:
        code = _CODES.get(self.status, f"http_{self.status}")
        return web.json_response(
            {"error": {"code": code, "message": self.reason}}, status=self.status
        )
