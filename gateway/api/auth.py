"""Bearer tokens with roles: `admin`, `agent` (bound to one agent id), `integration`,
`supervisor` (reads the KPIs and the reports page, nothing else: `SUPERVISOR_READS`).

An agent token carries a `Scope` (what it sees and acts on, from `auth.visibility`), which
every store operation checks inside its transaction."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from connectors.http import bearer_token, fail, token_bytes
from gateway.config import AgentConfig, AuthConfig, TokenConfig
from gateway.store.base import Scope

# What a supervisor token may read; every other route answers it 403.
SUPERVISOR_READS = frozenset({"/v1/me", "/v1/stats", "/v1/stats/survey-responses"})


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    agent: str | None = None
    # What the principal sees and acts on; None: everything (admin, integration).
    scope: Scope | None = None
    acts_as_agents: bool = False

    @property
    def acting_agent(self) -> str | None:
        """The agent this principal is restricted to act as (None: unrestricted)."""
        return self.agent if self.role == "agent" else None


def scope_for(token: TokenConfig, auth: AuthConfig, agents: list[AgentConfig]) -> Scope | None:
    if token.role != "agent":
        return None
    visibility = token.visibility or auth.visibility
    if visibility == "all":
        return Scope(agent=token.agent, queues=None)
    if visibility == "assigned":
        return Scope(agent=token.agent, queues=frozenset())
    agent = next((a for a in agents if a.id == token.agent), None)
    return Scope(agent=token.agent, queues=frozenset(agent.queues if agent else ()))


class Authenticator:
    def __init__(self, config: AuthConfig, agents: list[AgentConfig] | None = None) -> None:
        self._tokens = [
            (
                t.token.get_secret_value().encode(),
                Principal(
                    t.name,
                    t.role,
                    t.agent,
                    scope_for(t, config, agents or []),
                    t.role == "integration" and t.acts_as_agents,
                ),
            )
            for t in config.tokens
        ]
        self._metrics = (
            config.metrics_token.get_secret_value().encode() if config.metrics_token else None
        )

    def metrics_allowed(self, request: web.Request) -> bool:
        """/metrics is open unless `auth.metrics_token` is set; then it or an admin token."""
        if self._metrics is None:
            return True
        token = bearer_token(request)
        if token is None:
            return False
        if hmac.compare_digest(token_bytes(token), self._metrics):
            return True
        principal = self.lookup(token)
        return principal is not None and principal.role == "admin"

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
        if principal.role == "supervisor" and (
            request.method not in ("GET", "HEAD") or request.path not in SUPERVISOR_READS
        ):
            fail(403, "forbidden", "a supervisor token reads /v1/stats and /v1/me only")
        return principal


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        fail(
            403,
            "forbidden",
            f"this needs the role {' or '.join(roles)}; the token has {principal.role}",
        )
