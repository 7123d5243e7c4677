"""What every API module shares: the app keys, authentication, request bodies and
query parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.http import fail, read_json, validation_details, without_nul
from gateway.api.auth import Authenticator, Principal

if TYPE_CHECKING:
    from gateway.app import Gateway


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")

M = TypeVar("M", bound=BaseModel)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def authenticate(request: web.Request, allow_query: bool = False) -> Principal:
    return request.app[AUTH].authenticate(request, allow_query)


class Body(BaseModel):
    # Strict: `true` is not a capacity of 1, "5" is not a number.
    model_config = ConfigDict(extra="forbid", strict=True)


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
