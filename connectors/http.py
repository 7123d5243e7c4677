"""HTTP helpers shared by webhook-receiving connectors and the core API.

Every error is `{"error": {"code": ..., "message": ...}}` with a precise 4xx, never a
traceback; bodies are read with a size limit and decoded strictly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from itertools import accumulate
from typing import Any, NoReturn, TypeVar, cast

import aiohttp
import orjson
from aiohttp import web

# JSON from peers: nesting deeper than this, or an integer longer than this, is refused
# before it can exhaust the parser's recursion or Python's int-string limit (4,300 digits).
MAX_JSON_DEPTH = 64
MAX_JSON_INT_DIGITS = 100

T = TypeVar("T")


def printable(text: str) -> str:
    """`text` with the bytes a peer sent that are not UTF-8 (kept by aiohttp as lone
    surrogates) replaced by U+FFFD, so it can be put in a response or a log line."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def without_nul(value: T) -> T:
    """`value` with U+0000 removed from every string in it (in lists, tuples, dict keys and
    values, dataclass fields; bytes are left alone). A NUL a peer sends is never meaningful,
    and PostgreSQL cannot store one in text or jsonb. Without any NUL it is `value` itself
    (every inbound item passes here: nothing is copied for the common case)."""
    if isinstance(value, str):
        return cast(T, value.replace("\x00", "")) if "\x00" in value else value
    if isinstance(value, list | tuple):
        items = [without_nul(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return cast(T, items if isinstance(value, list) else tuple(items))
    if isinstance(value, dict):
        pairs = [(without_nul(k), without_nul(v)) for k, v in value.items()]
        if all(k is a and v is b for (k, v), (a, b) in zip(pairs, value.items(), strict=True)):
            return value
        return cast(T, dict(pairs))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if f.init:
                old = getattr(value, f.name)
                new = without_nul(old)
                if new is not old:
                    changes[f.name] = new
        return cast(T, dataclasses.replace(value, **changes)) if changes else value
    return value


class ApiError(web.HTTPException):
    """An HTTP error that renders as the JSON error envelope."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        self.status_code = status
        message = printable(message)
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


async def read_capped(content: aiohttp.StreamReader, max_bytes: int) -> tuple[bytes, bool]:
    """At most the first `max_bytes` of a peer's answer, and whether it had more. Reading
    stops there: the rest is never received (leaving the response closes the connection)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(16384):
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks), False


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(400, "invalid_encoding", f"request body is not valid UTF-8 (byte {exc.start})")


class MalformedJson(ValueError):
    """JSON a peer sent that is refused; the message says why, precisely."""


class JsonTooComplex(MalformedJson):
    """Well-formed, perhaps, but nested too deeply or with a number too long: hostile."""


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_LONG_DIGITS = re.compile(r"\d{19}")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (brackets inside strings do
    not count). Runs at C speed: no per-character Python code."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise JsonTooComplex(
            f"a number with {len(digits.lstrip('-'))} digits "
            f"(at most {MAX_JSON_INT_DIGITS} digits are accepted)"
        )
    return int(digits)


def loads_json(data: str | bytes | bytearray) -> Any:
    """Parse JSON a peer sent, bounded: raises `JsonTooComplex` when it is nested deeper
    than `MAX_JSON_DEPTH` or holds an integer longer than `MAX_JSON_INT_DIGITS` digits,
    `MalformedJson` when it is not UTF-8 or not JSON. Never `RecursionError`."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJson(f"not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    # The fast path, in C (orjson), for a text that cannot nest deeper than the bound (no
    # more brackets than that) and holds no run of 19 digits (orjson reads an integer
    # beyond 64 bits as a float, the bounded parser as an int): there orjson gives what the
    # bounded parser below would. Whatever orjson refuses (NaN, a lone surrogate, not
    # JSON) takes the bounded parser too, for the same answer or the same error as before.
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH and not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise JsonTooComplex(
            f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH} are accepted)"
        )
    try:
        return json.loads(text, parse_int=_bounded_int)
    except JsonTooComplex:
        raise
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: never a traceback
        raise MalformedJson(str(exc)) from None


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The parsed JSON body: 413 too large, 400 not UTF-8 / not JSON / nested too deeply
    / a number too long."""
    text = decode_utf8(await read_body(request, max_bytes))
    if not text.strip():
        fail(400, "invalid_json", "request body is empty; a JSON object is expected")
    try:
        return loads_json(text)
    except MalformedJson as exc:
        fail(400, "invalid_json", f"malformed JSON: {exc}")


def bearer_token(request: web.Request) -> str | None:
    """The bearer token, or None when there is none. A token is compared as its bytes
    (`token_bytes`): a header with bytes that are not UTF-8 is just a wrong token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_bytes(token: str) -> bytes:
    """A token as bytes for a constant-time comparison that cannot raise: aiohttp keeps
    header bytes that are not UTF-8 as lone surrogates, which plain `encode()` refuses."""
    return token.encode("utf-8", "surrogatepass")


def client_key(address: str | None) -> str:
    """The key a client address is counted under for per-client caps: an IPv4 address as
    it is, an IPv6 one by its /64 (what one subscriber usually gets), an IPv4-mapped IPv6
    address as the IPv4 one."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
