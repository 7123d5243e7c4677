"""Bearer tokens with roles: `admin`, `agent` (bound to one agent id), `integration`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from connectors.http import bearer_token, fail, token_bytes
from gateway.config import AuthConfig


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    agent: str | None = None

    @property
    def acting_agent(self) -> str | None:
        """The agent this principal is restricted to act as (None: unrestricted)."""
        return self.agent if self.role == "agent" else None


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self._tokens = [
            (t.token.get_secret_value().encode(), Principal(t.name, t.role, t.agent))
            for t in config.tokens
        ]

    def lookup(self, token: str) -> Principal | None:
        raw = token_bytes(token)
        found = None
        for secret, principal in self._tokens:  # compare against all: constant time overall
            if hmac.compare_digest(raw, secret):
                found = principal
        return found

    def authenticate(self, request: web.Request, allow_query: bool = False) -> Principal:
        token = bearer_token(request)
        if token is None and allow_query:
            # Browsers cannot set headers on WebSocket/EventSource: accept ?access_token=.
            token = request.query.get("access_token") or None
        if token is None:
            fail(401, "unauthenticated", "missing bearer token (Authorization: Bearer <token>)")
        principal = self.lookup(token)
        if principal is None:
            fail(401, "unauthenticated", "invalid token")
        return principal


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        fail(
            403,
            "forbidden",
            f"this needs the role {' or '.join(roles)}; the token has {principal.role}",
        )
