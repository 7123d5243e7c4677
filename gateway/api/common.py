"""What every API module shares: the app keys, authentication, request bodies and
query parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from connectors.http import fail, printable, read_json, validation_details, without_nul
from gateway.api.auth import Authenticator, Principal

if TYPE_CHECKING:
    from gateway.app import Gateway


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
# (method, route path) -> the query parameters the OpenAPI document declares for it
# (set by gateway.api.openapi.mount from the very document it serves).
QUERY_PARAMS: web.AppKey[dict[tuple[str, str], frozenset[str]]] = web.AppKey("query_params")

M = TypeVar("M", bound=BaseModel)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def authenticate(request: web.Request, allow_query: bool = False) -> Principal:
    return request.app[AUTH].authenticate(request, allow_query)


class Body(BaseModel):
    # Strict: `true` is not a capacity of 1, "5" is not a number.
    model_config = ConfigDict(extra="forbid", strict=True)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the text is only whitespace")
    return text


# What an agent writes (a reply, a note, a first message): 1-100,000 characters, not only
# whitespace (`"   "` would reach the customer as a blank message).
MessageText = Annotated[
    str,
    Field(min_length=1, max_length=100_000, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
]


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as `model`, with NUL (U+0000) removed from every string in
    it: never meaningful in text or an id, and PostgreSQL cannot store it."""
    data = without_nul(await read_json(request, gateway_of(request).config.server.max_body_bytes))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fail(
            422,
            "validation_error",
            "the request body is not valid",
            validation_details(exc.errors()),
        )


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid_parameter", f"{name} must be an integer")
    if not lo <= value <= hi:
        fail(400, "invalid_parameter", f"{name} must be between {lo} and {hi}")
    return value


def only_params(request: web.Request, allowed: Iterable[str]) -> None:
    """400 naming the first query parameter this route does not know (never ignored)."""
    known = set(allowed)
    for name in request.query:
        if name not in known:
            fail(
                400,
                "invalid_parameter",
                f"unknown query parameter {name!r}",
                [{"field": name, "message": "unknown query parameter"}],
            )


@web.middleware
async def query_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An API request's path and query, checked once before any handler:
    - a NUL (U+0000, `%00`) in the path or a query parameter is a 400 (never meaningful,
      and PostgreSQL cannot compare text with it);
    - every GET refuses a query parameter its operation in the OpenAPI document does not
      declare (a typo such as `form=` must not silently mean the default): the document
      is the one list, so server and spec cannot drift."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    if "\x00" in request.path:
        fail(400, "invalid_parameter", "path must not contain a NUL (%00)")
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            shown = printable(name.replace("\x00", "%00"))
            fail(400, "invalid_parameter", f"{shown} must not contain a NUL (%00)")
    if request.method in ("GET", "HEAD"):
        resource = request.match_info.route.resource
        declared = request.app.get(QUERY_PARAMS, {})
        allowed = None if resource is None else declared.get(("GET", resource.canonical))
        if allowed is not None:
            only_params(request, allowed)
    return await handler(request)
