"""The gateway's configuration: one YAML file validated by pydantic models.

`${VAR}` and `${VAR:-default}` in string values read the environment, so secrets stay out
of the file. A wrong config is refused with every problem listed at once, each with its
key path and YAML line (`channels[2].imap.port (line 31): ...`), never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.base import ConnectorSettings
from connectors.egress import configured_endpoint, resolved_private_problem
from gateway import yamlload
from gateway.bots.config import WebhookBotConfig, bot_problems
from gateway.config_surveys import SurveysConfig, TextsConfig
from gateway.config_workspace import AgentAttachmentsConfig, CannedReplyConfig
from gateway.kb.config import KnowledgeBaseConfig
from gateway.kb.search import KnowledgeBase
from gateway.portal.config import PortalConfig
from gateway.registry import ConnectorRegistry, UnknownConnector, default_registry
from gateway.time.notice_texts import NoticesConfig
from router.config import RoutingConfig

Loc = tuple[str | int, ...]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90s`, `15m`, `72h`, `7d`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 15m, 72h, 7d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError("a duration is a number of seconds or a string like 15m, 72h, 7d")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="Base URL the gateway is reached at from outside (webhooks)."
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted request body.")
    shutdown_timeout: float = Field(10.0, ge=0)
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send a complete request line and headers, from "
        "connecting (or from the first byte of a further request on a kept-alive "
        "connection); then the connection is closed (slowloris).",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a request body may stall (no byte arriving) before the request "
        "is abandoned and its connection closed; a slow body that keeps coming is fine.",
    )
    idle_timeout: float = Field(
        75.0, gt=0, le=3600, description="Seconds an idle kept-alive connection is kept open."
    )
    max_connections: int = Field(
        4096,
        ge=16,
        description="Open client connections at most, lowered to fit the process's open-file "
        "limit with headroom. At the cap a new connection replaces the oldest idle one, "
        "else the oldest one still sending its request head; else it gets 503.",
    )
    max_connections_per_client: int = Field(
        100,
        ge=1,
        description="Open connections per client address (an IPv6 client by its /64); "
        "through a trusted proxy, concurrent requests per X-Forwarded-For client. Over "
        "it: 429.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies in front of the gateway. Only "
        "their X-Forwarded-For is believed (the client is its rightmost address outside "
        "these networks); their own connections count only towards max_connections.",
    )

    @field_validator("header_timeout", "body_timeout", "idle_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class StoreConfig(Strict):
    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="sqlite: one embedded file (one instance); postgres: a PostgreSQL "
        "database that several instances may share.",
    )
    path: str = Field("var/switchboard.db", description="sqlite: the database file.")
    synchronous: Literal["normal", "full"] = Field(
        "normal",
        description="sqlite: normal: a committed message survives a crash of the process; "
        "full: also an OS crash or power loss, at the cost of an fsync per commit.",
    )
    dsn: SecretStr | None = Field(
        None,
        description="postgres: postgresql://user:password@host:port/database (put the "
        "password in the environment: ${PGPASSWORD_VAR}).",
    )
    pool_size: int = Field(
        10, ge=1, le=500, description="postgres: connections this instance keeps at most."
    )

    @model_validator(mode="after")
    def _backend_settings(self) -> StoreConfig:
        if self.backend == "postgres" and not (self.dsn and self.dsn.get_secret_value()):
            raise ValueError("store.dsn is required with backend: postgres")
        return self


Visibility = Literal["all", "queues", "assigned"]


class TokenConfig(Strict):
    name: str
    token: SecretStr = Field(min_length=12)
    role: Literal["admin", "agent", "integration", "supervisor"] = Field(
        description="admin: everything; agent: as one agent; integration: a helpdesk; "
        "supervisor: a team lead: sees and acts on every conversation in its `queues` (all "
        "without), reads /v1/stats and the reports page; no administration."
    )
    agent: str | None = Field(None, description="The agent an `agent` token acts as.")
    visibility: Visibility | None = Field(
        None, description="For an `agent` token: overrides `auth.visibility`."
    )
    queues: list[str] | None = Field(
        None,
        description="For a `supervisor` token: the queues it sees and acts on (none: all).",
    )
    acts_as_agents: bool = Field(
        False,
        description="For an `integration` token: may reply, assign and resolve in an agent's "
        "name (a helpdesk relaying its agents). Otherwise it acts as itself.",
    )


class AuthConfig(Strict):
    tokens: list[TokenConfig] = Field(default_factory=list)
    visibility: Visibility = Field(
        "queues",
        description="What an agent token sees and acts on: `all` conversations, those in the "
        "agent's `queues` (and its own), or only those `assigned` to it. The event stream is "
        "filtered the same way.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        min_length=12,
        description="When set, GET /metrics needs `Authorization: Bearer <this>` (or an admin "
        "token).",
    )


class AgentConfig(Strict):
    id: Name
    name: str
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    capacity: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"default": 3},
        description="Concurrent conversations per channel kind; `default` for the rest.",
    )
    queues: list[str] = Field(default_factory=list)
    presence: Literal["online", "away", "offline"] = Field(
        "offline", description="Presence when the agent is first seen."
    )

    def capacity_for(self, channel_kind: str) -> int:
        return self.capacity.get(channel_kind, self.capacity.get("default", 3))


# Keys of a `channels[]` entry that the core reads; every other key is the connector's.
CORE_CHANNEL_KEYS = ("name", "type", "outbox")


class ChannelConfig(BaseModel):
    """`name` and `type`; every other key belongs to the connector's settings model."""

    model_config = ConfigDict(extra="allow")
    name: Name
    type: str
    outbox: RetryPolicy | None = Field(
        None, description="This channel's retry horizon and attempt bound (core setting)."
    )

    def settings_data(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class WebhookConfig(Strict):
    # Declared before `url`, whose check reads it.
    allow_private_networks: bool = Field(
        False,
        description="Allow a url on loopback, private or link-local addresses "
        "(checked after DNS resolution, at every request).",
    )
    url: str = Field(description="http:// or https:// URL the events are POSTed to.")
    secret: SecretStr
    events: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("url")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        return configured_endpoint(value, info.data.get("allow_private_networks", False))

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        from connectors.signing import decode_secret

        decode_secret(value.get_secret_value())
        return value


class AcknowledgementConfig(Strict):
    """An automatic first answer to a new conversation ("we got your message"), in the
    contact's language: the `acknowledgement` text of the catalogs (`texts:`), or `text`."""

    text: str | None = Field(
        None,
        min_length=1,
        max_length=4000,
        description="The same text in every language (default: the catalogs' "
        "`acknowledgement`). Placeholders: {name}, {reference}, {subject}.",
    )
    channels: list[str] | None = Field(None, description="Only these channels (default: all).")
    max_per_contact: int = Field(3, ge=1, description="Automatic messages per contact per window.")
    window: float = Field(86400.0, gt=0)

    @field_validator("text")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            value.format(name="", reference="", subject="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"not a valid template ({exc}); use {{name}}, {{reference}}, {{subject}}"
            ) from None
        return value

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class ConversationsConfig(Strict):
    reopen_window: float = Field(
        7 * 86400.0, description="A customer reply within this time reopens a resolved one."
    )
    acknowledgement: AcknowledgementConfig | None = None

    @field_validator("reopen_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class RetryPolicy(Strict):
    """How long a reply keeps being retried: a time horizon, and optionally a count."""

    retry_horizon: float | None = Field(
        None,
        description="Give up on a reply this long after it was queued (e.g. 12h); capped "
        "exponential backoff with full jitter until then.",
    )
    max_attempts: int | None = Field(
        None, ge=1, description="An extra bound: give up after this many attempts."
    )

    @field_validator("retry_horizon", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


class OutboxConfig(Strict):
    retry_horizon: float = Field(
        12 * 3600.0,
        gt=0,
        description="Give up on a reply this long after it was queued; a channel may override.",
    )
    max_attempts: int | None = Field(
        None, ge=1, description="Optional extra bound on attempts; a channel may override."
    )
    base_delay: float = Field(1.0, gt=0)
    max_delay: float = Field(300.0, gt=0, description="The longest wait between two attempts.")
    send_timeout: float = Field(30.0, gt=0)
    concurrency: int = Field(16, ge=1)

    @field_validator("retry_horizon", "base_delay", "max_delay", "send_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    def policy_for(self, channel: RetryPolicy | None) -> tuple[float, int | None]:
        """(horizon, max attempts) for a channel: its own settings, else these."""
        horizon = self.retry_horizon
        attempts = self.max_attempts
        if channel is not None:
            if channel.retry_horizon is not None:
                horizon = channel.retry_horizon
            if channel.max_attempts is not None:
                attempts = channel.max_attempts
        return horizon, attempts


class EventsConfig(Strict):
    """How long the event log keeps events (consumers resume from it with `?since=`)."""

    retention: float = Field(
        30 * 86400.0,
        gt=0,
        description="Events committed longer ago than this are pruned (e.g. 30d, 12h).",
    )
    max_events: int | None = Field(
        None, ge=1, description="An extra bound: keep at most this many of the newest events."
    )
    prune_interval: float = Field(
        600.0, gt=0, description="How often old events are pruned (and once at start)."
    )

    @field_validator("retention", "prune_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class TimersConfig(Strict):
    max_sleep: float = Field(
        5.0,
        gt=0,
        description=(
            "Time-driven work (SLAs, escalation, offers, surveys) is looked at least this "
            "often, so a wall clock that jumps is noticed within this bound."
        ),
    )

    @field_validator("max_sleep", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class CoordinationConfig(Strict):
    """Issue 11: what several instances share besides the store (gateway/coord/)."""

    redis: SecretStr | None = Field(
        None,
        description="redis://[:password@]host:port/db (or rediss://): wake-ups between "
        "instances, webchat fan-out, leases, shared rate limits and presence. Unset: one "
        "instance, coordinated in process.",
    )
    prefix: str = Field(
        "switchboard",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Key prefix; keys are hash-tagged {prefix} so a Redis Cluster keeps "
        "them on one slot.",
    )


class GatewayConfig(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)  # type: ignore[arg-type]
    store: StoreConfig = Field(default_factory=StoreConfig)  # type: ignore[arg-type]
    coordination: CoordinationConfig = Field(default_factory=CoordinationConfig)  # type: ignore[arg-type]
    auth: AuthConfig = Field(default_factory=AuthConfig)  # type: ignore[arg-type]
    agents: list[AgentConfig] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(default_factory=list)
    routing: RoutingConfig
    conversations: ConversationsConfig = Field(default_factory=ConversationsConfig)  # type: ignore[arg-type]
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)  # type: ignore[arg-type]
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    events: EventsConfig = Field(default_factory=EventsConfig)  # type: ignore[arg-type]
    timers: TimersConfig = Field(default_factory=TimersConfig)  # type: ignore[arg-type]
    # Issue 12: the out-of-hours reply and the long-wait message (gateway/time/notices.py).
    notices: NoticesConfig = Field(default_factory=NoticesConfig)  # type: ignore[arg-type]
    # Customer surveys (gateway/surveys/) and customer texts (gateway/i18n.py).
    surveys: SurveysConfig | None = None
    texts: TextsConfig = Field(default_factory=TextsConfig)  # type: ignore[arg-type]
    # The agent workspace (issue 14; gateway/config_workspace.py).
    canned_replies: list[CannedReplyConfig] = Field(default_factory=list)
    agent_attachments: AgentAttachmentsConfig = Field(default_factory=AgentAttachmentsConfig)  # type: ignore[arg-type]
    # Issue 15: articles as Markdown files (gateway/kb/).
    knowledge_base: KnowledgeBaseConfig | None = None
    # Issue 15: the customer portal (gateway/portal/).
    portal: PortalConfig = Field(default_factory=PortalConfig)  # type: ignore[arg-type]
    # Issue 15: external bots for `bot: {webhook: NAME}` on a rule (gateway/bots/).
    bots: dict[Name, WebhookBotConfig] = Field(default_factory=dict)

    def agent(self, agent_id: str) -> AgentConfig | None:
        return next((a for a in self.agents if a.id == agent_id), None)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with each channel's settings already parsed by its connector."""

    config: GatewayConfig
    channel_settings: dict[str, ConnectorSettings]
    path: Path | None = None
    # The articles of `knowledge_base` (issue 15), read and checked with the config.
    kb: KnowledgeBase | None = None
    kb_missing: bool = False


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem of a config at once."""

    def __init__(self, problems: list[ConfigProblem], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _substitute(data: Any, loc: Loc, env: dict[str, str], problems: list[tuple[Loc, str]]) -> Any:
    if isinstance(data, dict):
        return {k: _substitute(v, (*loc, str(k)), env, problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, (*loc, i), env, problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if env.get(name):
                return env[name]
            if default is not None:  # like a shell: unset or empty takes the default
                return default
            if name in env:
                return ""
            problems.append((loc, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(repl, data)
    return data


def _line_map(node: yaml.Node | None, loc: Loc, out: dict[Loc, int]) -> None:
    if node is None:
        return
    out[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*loc, k)] = key.start_mark.line + 1
            _line_map(value, (*loc, k), out)
            out[(*loc, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*loc, i), out)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _data_path(loc: tuple[str | int, ...], data: Any, missing: bool) -> Loc:
    """The part of a pydantic error location that exists in the user's data.

    Pydantic adds schema tags for union members (`str`, `list[str]`, model names) that are
    no key of the file; only keys and indexes found while walking the data are kept (and,
    for a missing field, the name of the field)."""
    out: list[str | int] = []
    for n, part in enumerate(loc):
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_dict or in_list:
            data = data[part]
        elif not (missing and n == len(loc) - 1):
            continue
        out.append(part)
    return tuple(out)


def _pydantic_problems(
    exc: ValidationError, prefix: Loc, lines: dict[Loc, int], data: Any
) -> list[ConfigProblem]:
    """One problem per data path: the alternatives of a union are joined into one."""
    by_path: dict[Loc, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = (*prefix, *_data_path(err["loc"], data, err["type"] == "missing"))
        message = (
            "unknown key (not allowed here)" if err["type"] == "extra_forbidden" else err["msg"]
        )
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [
        ConfigProblem(format_loc(path), "; or ".join(messages), _line_for(path, lines))
        for path, messages in by_path.items()
    ]


def _cross_checks(cfg: GatewayConfig) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    queues = {q.name for q in cfg.routing.queues}
    agent_ids: set[str] = set()
    for i, agent in enumerate(cfg.agents):
        if agent.id in agent_ids:
            problems.append((("agents", i, "id"), f"duplicate agent id {agent.id!r}"))
        agent_ids.add(agent.id)
        for j, queue in enumerate(agent.queues):
            if queue not in queues:
                problems.append((("agents", i, "queues", j), f"unknown queue {queue!r}"))
    names: set[str] = set()
    for i, channel in enumerate(cfg.channels):
        if channel.name in names:
            problems.append((("channels", i, "name"), f"duplicate channel name {channel.name!r}"))
        names.add(channel.name)
    ack = cfg.conversations.acknowledgement
    for i, name in enumerate(ack.channels or [] if ack else []):
        if name not in names:
            problems.append(
                (("conversations", "acknowledgement", "channels", i), f"unknown channel {name!r}")
            )
    surveys = cfg.surveys
    for i, name in enumerate(surveys.channels or [] if surveys else []):
        if name not in names:
            problems.append((("surveys", "channels", i), f"unknown channel {name!r}"))
    for kind in ("csat", "nps", "ces") if surveys else ():
        for i, queue in enumerate(getattr(surveys, kind).queues):
            if queue != "*" and queue not in queues:
                problems.append(((("surveys", kind, "queues", i)), f"unknown queue {queue!r}"))
    owners: set[tuple[str, str]] = set()
    for i, canned in enumerate(cfg.canned_replies):
        for j, queue in enumerate(canned.queues):
            if queue not in queues:
                problems.append((("canned_replies", i, "queues", j), f"unknown queue {queue!r}"))
        if canned.agent is not None and canned.agent not in agent_ids:
            problems.append((("canned_replies", i, "agent"), f"unknown agent {canned.agent!r}"))
        owner = (canned.agent or "", canned.shortcut)
        if owner in owners:
            problems.append(
                (("canned_replies", i, "shortcut"), f"duplicate shortcut {canned.shortcut!r}")
            )
        owners.add(owner)
    for i, rule in enumerate(cfg.routing.rules):  # issue 15: the bot needs the articles
        if rule.bot == "knowledge_base" and cfg.knowledge_base is None:
            problems.append(
                (
                    ("routing", "rules", i, "bot"),
                    "bot: knowledge_base needs a knowledge_base section",
                )
            )
    problems.extend(bot_problems(cfg.routing.rules, cfg.bots, [q.name for q in cfg.routing.queues]))
    tokens: set[str] = set()
    for i, token in enumerate(cfg.auth.tokens):
        secret = token.token.get_secret_value()
        if secret in tokens:
            problems.append((("auth", "tokens", i, "token"), "the same token is given twice"))
        tokens.add(secret)
        if token.role == "agent" and token.agent not in agent_ids:
            problems.append(
                (("auth", "tokens", i, "agent"), "an agent token must name a configured agent")
            )
        if token.role != "agent" and token.agent is not None:
            problems.append((("auth", "tokens", i, "agent"), "only agent tokens name an agent"))
        if token.queues is not None and token.role != "supervisor":
            problems.append((("auth", "tokens", i, "queues"), "only supervisor tokens list queues"))
        for q in token.queues or ():
            if q not in queues:
                problems.append((("auth", "tokens", i, "queues"), f"unknown queue {q!r}"))
    return problems


def load_config_text(
    text: str,
    *,
    env: dict[str, str] | None = None,
    registry: ConnectorRegistry | None = None,
    source: str = "config",
    base_dir: Path | None = None,
) -> LoadedConfig:
    """Parse and validate a config; raises `ConfigError` listing every problem.
    `base_dir`: where relative paths (the knowledge base) start; default the working one."""
    env = dict(os.environ) if env is None else env
    registry = registry or default_registry()
    try:
        node, data = yamlload.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem("(yaml)", str(problem), line)], source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("(root)", "the config must be a mapping", 1)], source)
    lines: dict[Loc, int] = {}
    _line_map(node, (), lines)
    sub_problems: list[tuple[Loc, str]] = []
    data = _substitute(data, (), env, sub_problems)
    problems = [
        ConfigProblem(format_loc(loc), msg, _line_for(loc, lines)) for loc, msg in sub_problems
    ]

    cfg: GatewayConfig | None = None
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, (), lines, data))

    channel_settings: dict[str, ConnectorSettings] = {}
    raw_channels = data.get("channels") if isinstance(data.get("channels"), list) else []
    for i, raw in enumerate(raw_channels or []):
        if not isinstance(raw, dict) or "type" not in raw:
            continue
        try:
            connector = registry.get(str(raw["type"]))
        except UnknownConnector as exc:
            loc: Loc = ("channels", i, "type")
            problems.append(ConfigProblem(format_loc(loc), str(exc), _line_for(loc, lines)))
            continue
        settings = {k: v for k, v in raw.items() if k not in CORE_CHANNEL_KEYS}
        try:
            channel_settings[str(raw.get("name"))] = connector.settings_model.model_validate(
                settings
            )
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, ("channels", i), lines, settings))

    if cfg is not None:
        problems.extend(
            ConfigProblem(format_loc(loc), msg, _line_for(loc, lines))
            for loc, msg in _cross_checks(cfg)
        )
    kb: KnowledgeBase | None = None
    kb_missing = False
    if cfg is not None and cfg.knowledge_base is not None:
        from gateway.kb.config import build

        kb, kb_problems, kb_missing = build(cfg.knowledge_base, base_dir)
        problems.extend(ConfigProblem(p.file, p.message, p.line) for p in kb_problems)
    if problems or cfg is None:
        raise ConfigError(problems, source)
    return LoadedConfig(cfg, channel_settings, kb=kb, kb_missing=kb_missing)


def load_config(
    path: str | Path,
    *,
    env: dict[str, str] | None = None,
    registry: ConnectorRegistry | None = None,
) -> LoadedConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem("(file)", f"cannot read {path}: {exc}")], str(path)
        ) from None
    loaded = load_config_text(
        text, env=env, registry=registry, source=str(path), base_dir=path.parent
    )
    return LoadedConfig(loaded.config, loaded.channel_settings, path, loaded.kb, loaded.kb_missing)


async def resolved_endpoint_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """The endpoints (webhooks, a channel's `outbound_url`) whose host name resolves, now,
    only to loopback, private or link-local addresses without `allow_private_networks`:
    the gateway would refuse every request to them. For `switchboard check`; the gateway
    itself checks at every request, as names may resolve differently later."""
    endpoints: list[tuple[Loc, str]] = []
    for i, hook in enumerate(loaded.config.webhooks):
        if not hook.allow_private_networks:
            endpoints.append((("webhooks", i, "url"), hook.url))
    for i, channel in enumerate(loaded.config.channels):
        settings = loaded.channel_settings.get(channel.name)
        url = getattr(settings, "outbound_url", None)
        if isinstance(url, str) and not getattr(settings, "allow_private_networks", False):
            endpoints.append((("channels", i, "outbound_url"), url))

    async def problem(url: str) -> str | None:
        try:
            return await asyncio.wait_for(resolved_private_problem(url), 10)
        except TimeoutError:
            return None

    found = await asyncio.gather(*(problem(url) for _, url in endpoints))
    return [
        ConfigProblem(format_loc(loc), message)
        for (loc, _), message in zip(endpoints, found, strict=True)
        if message
    ]


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editor completion."""
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchboard gateway configuration"
    return schema
