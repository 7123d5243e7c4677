"""The error middleware: every error leaves as the one JSON envelope."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from connectors.http import ApiError, printable
from gateway.store.base import Conflict, Forbidden, NotFound, Unstorable
from gateway.store.outage import RETRY_AFTER, StoreUnavailable

log = logging.getLogger("switchboard.api")


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as the JSON envelope; nothing leaks a traceback."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body too large"
        err = ApiError(exc.status, code, message)
        if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110)
            err.headers["Allow"] = exc.headers["Allow"]
        raise err from None
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except StoreUnavailable:
        # Logged once per interval by the store (gateway/store/outage.py), not per request.
        err = ApiError(503, "unavailable", "the store cannot be reached; try again shortly")
        err.headers["Retry-After"] = str(RETRY_AFTER)
        raise err from None
    except asyncio.CancelledError:
        raise
    except (RecursionError, UnicodeError, Unstorable) as exc:
        # What a client's malformed input leads to when a handler missed a check: nesting
        # too deep for a recursive parser, bytes that are not UTF-8 (lone surrogates), text
        # the store cannot hold (a NUL on PostgreSQL).
        # The client's fault, so a 400; logged so that the missing check gets added.
        log.warning(
            "malformed input reached a handler",
            extra={"path": printable(request.path), "error": type(exc).__name__},
        )
        raise ApiError(400, "bad_request", f"malformed request ({type(exc).__name__})") from None
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        raise ApiError(500, "internal", "internal error; see the gateway log") from None
