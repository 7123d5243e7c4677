"""Bearer tokens with roles: `admin`, `agent` (bound to one agent id), `integration`,
`supervisor` (a team lead: sees and acts on every conversation of its `queues`, all without;
reads the KPIs and the reports page; no administration: `supervisor_allowed`).

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
# The agent workspace a supervisor works in (issue 14): conversations (read and act),
# search, the event stream, blobs; agents and contacts read only.
SUPERVISOR_WORKSPACE = ("/v1/conversations", "/v1/search", "/v1/events", "/v1/blobs/")
SUPERVISOR_WORKSPACE_READS = ("/v1/agents", "/v1/contacts")


def supervisor_allowed(method: str, path: str) -> bool:
    read = method in ("GET", "HEAD")
    if read and path in SUPERVISOR_READS:
        return True
    if path.startswith(SUPERVISOR_WORKSPACE):
        return True
    return read and path.startswith(SUPERVISOR_WORKSPACE_READS)


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
    if token.role == "supervisor":
        # Acts as nobody: sees and acts on everything in its queues, whoever has it.
        return None if token.queues is None else Scope(agent=None, queues=frozenset(token.queues))
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
        if principal.role == "supervisor" and not supervisor_allowed(request.method, request.path):
            fail(
                403,
                "forbidden",
                "a supervisor token works with conversations and reads the stats; "
                "this needs an admin",
            )
        return principal


def reader_of(principal: Principal) -> str:
    """Whose read markers a principal keeps: its agent's, else its token's name."""
    return principal.agent or f"token:{principal.name}"


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        fail(
            403,
            "forbidden",
            f"this needs the role {' or '.join(roles)}; the token has {principal.role}",
        )
