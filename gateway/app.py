"""The composition root: builds the store, connectors, dispatcher, outbox and HTTP app,
and starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web

from connectors.base import (
    AuthFailed,
    Capability,
    Connector,
    ConnectorContext,
    Identity,
    InvitationEvent,
    LeaseFactory,
    NotReady,
    RawItem,
    VerificationResult,
    VerifyConfirm,
    VerifyStart,
)
from connectors.egress import redact_urls
from connectors.ratelimit import RateLimiter
from gateway.api import openapi
from gateway.api.auth import Authenticator
from gateway.api.common import AUTH, GATEWAY, query_middleware
from gateway.api.errors import error_middleware
from gateway.api.routes import add_routes
from gateway.autoreply import Acknowledger
from gateway.bots.stage import IdleSource, WebhookBotStage
from gateway.config import LoadedConfig
from gateway.connections import ConnectionGuard, GuardedSite
from gateway.coord import Coordinator, LocalCoordinator
from gateway.coord.keys import Keys
from gateway.coord.leases import ChannelLease, make_leases
from gateway.coord.presence import Heartbeats, LocalHeartbeats, PresenceSweeper, RedisHeartbeats
from gateway.dispatch import Dispatcher
from gateway.events import EventBus
from gateway.i18n import Texts
from gateway.identity import normalize
from gateway.inbox import Inbox
from gateway.ingest import ChannelInfo, Ingestor
from gateway.kb import web as kb_web
from gateway.kb.bot import KbBot
from gateway.kb.suggest import Suggester
from gateway.kpis import hooks as kpi_hooks
from gateway.kpis.fold import Kpis
from gateway.metrics import METRICS
from gateway.model import Conversation, Event, Message, ephemeral
from gateway.outbox import Outbox
from gateway.portal import web as portal_web
from gateway.portal.service import Portal
from gateway.quarantine import QuarantineService
from gateway.registry import ConnectorRegistry, default_registry
from gateway.reload import ReloadResult
from gateway.reload import reload as reload_config
from gateway.routetext import to_dict
from gateway.services import Services
from gateway.store.base import ConversationFilter, NotFound, OutboundRequest, Store
from gateway.store.sqlite import SqliteStore
from gateway.surveys import web as surveys_web
from gateway.surveys.service import Surveys
from gateway.time.deadlines import Deadlines
from gateway.time.escalation import EscalationTimer, NoReplyTimer, OfferTimeouts, OfflineTimer
from gateway.time.notices import TimeNotices, WaitBoard, WaitNoticeSource
from gateway.time.sla import OpeningSource, SlaSource
from gateway.time.snooze import SnoozeSource
from gateway.verification import Verifier
from gateway.webhooks import WebhookSender
from gateway.workspace.files import AgentFiles
from gateway.workspace.viewing import RedisViewers, Viewers
from router import MessageFacts, explain

if TYPE_CHECKING:
    from gateway.coord.client import RedisClient

log = logging.getLogger("switchboard")


class ChannelKV:
    """A connector's namespaced view of the store's key-value table."""

    def __init__(self, store: Store, namespace: str, clock: Callable[[], float]) -> None:
        self._store, self._ns, self._clock = store, namespace, clock

    async def get(self, key: str) -> str | None:
        return await self._store.kv_get(self._ns, key)

    async def set(self, key: str, value: str) -> None:
        await self._store.kv_set(self._ns, key, value)

    async def delete(self, key: str) -> None:
        await self._store.kv_delete(self._ns, key)

    async def lease(self, key: str, holder: str, ttl: float) -> bool:
        return await self._store.kv_lease(self._ns, key, holder, ttl, self._clock())

    async def set_fenced(self, key: str, value: str, fence: str, token: int) -> bool:
        return await self._store.kv_set_fenced(self._ns, key, value, fence, token)


async def _close_quietly(ws: web.WebSocketResponse) -> None:
    """Close an event stream socket; a client already gone is no error."""
    with contextlib.suppress(Exception):
        await ws.close(code=1001, message=b"server shutting down")


def _invitation_counter(channel: str) -> InvitationEvent:
    """Counts a channel's widget invitations shown and answered (Prometheus)."""

    def count(invitation: str, event: Literal["shown", "answered"]) -> None:
        counter = METRICS.invitations_shown if event == "shown" else METRICS.invitations_answered
        counter.labels(channel, invitation).inc()

    return count


def make_coordinator(gw: Gateway) -> Coordinator:
    """Redis pub/sub between instances when `coordination.redis` is set, else in process."""
    cfg = gw.config.coordination
    if cfg.redis is None:
        return LocalCoordinator()
    # Imported only when configured, like asyncpg.
    from gateway.coord.client import RedisClient
    from gateway.coord.fanout import RedisCoordinator
    from gateway.coord.keys import Keys

    if gw.redis is None:  # one client per instance, shared with the leases
        gw.redis = RedisClient(
            cfg.redis.get_secret_value(), Keys(cfg.prefix), name=f"switchboard:{gw.instance}"
        )
    return RedisCoordinator(gw.redis, gw.bus, gw.store, gw.instance, gw.connectors, gw.outbox.poke)


def make_store(loaded: LoadedConfig, instance: str | None = None) -> Store:
    cfg = loaded.config.store
    if cfg.backend == "postgres" and cfg.dsn is not None:
        # Imported only when configured: asyncpg costs an embedded installation's start.
        from gateway.store.postgres import PostgresStore

        return PostgresStore(cfg.dsn.get_secret_value(), pool_size=cfg.pool_size, instance=instance)
    return SqliteStore(cfg.path, synchronous=cfg.synchronous.upper())


# Events after which a routing pass may assign something: a conversation waits, or an
# agent may have room (a manual assignment can free the previous assignee).
ROUTING_EVENTS = frozenset(
    {
        "conversation.created",
        "conversation.reopened",
        "conversation.transferred",
        "conversation.resolved",
        "agent.presence",
        "agent.capacity",
    }
)

# A channel that is not ready is started again after this many seconds, doubling up to
# the most.
CHANNEL_RETRY_FIRST = 1.0
CHANNEL_RETRY_MOST = 60.0
# The most of a channel's start failure that a log line and /readyz show.
MAX_REASON_CHARS = 200


def start_failure_reason(exc: BaseException) -> str:
    """Why a channel did not start, for a log line and /readyz: one short line, with every
    URL in it redacted (a provider's URL may carry a token, as Telegram's does)."""
    text = " ".join(redact_urls(str(exc)).split()) or type(exc.__cause__ or exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class Gateway:
    def __init__(
        self,
        loaded: LoadedConfig,
        registry: ConnectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.registry = registry or default_registry()
        self.clock = clock
        self.instance = uuid.uuid4().hex[:12]
        self.store: Store = make_store(loaded, self.instance)
        # Issue 11: Redis when configured (gateway/coord/): leases for work that must run
        # once across instances; without it everything is local (one instance).
        coordination = self.config.coordination
        keys = Keys(coordination.prefix)
        self.redis: RedisClient | None = None
        if coordination.redis is not None:
            # Imported only when configured, like asyncpg (an embedded start stays light).
            from gateway.coord.client import RedisClient

            self.redis = RedisClient(
                coordination.redis.get_secret_value(), keys, name=f"switchboard-{self.instance}"
            )
        # The store's lease rows decide (PostgreSQL's clock), so leased work goes on while
        # Redis is down; SQLite is one instance: Redis leases or local ones as before.
        self.leases = make_leases(
            self.redis.redis if self.redis else None,
            keys,
            self.instance,
            rows=self.store if self.config.store.backend == "postgres" else None,
            health=self.redis,
        )
        self.bus = EventBus()
        # The one commit path: every change of state commits, publishes, wakes (services.py).
        self.services = Services(self.store, self.bus, clock)
        self.dispatcher = Dispatcher(
            self.store, self.bus, self.config, clock, services=self.services
        )
        self.bus.listen(self._wake_routing)
        # Time-driven work (SLAs, escalation, offers, surveys) registers its sources here.
        self.deadlines = Deadlines(clock, self.config.timers.max_sleep)
        self.bus.listen(lambda event: self.deadlines.on_event(event.type))
        self.connectors: dict[str, Connector] = {}
        self.outbox = Outbox(
            self.store,
            self.bus,
            self.connectors,
            self.config.outbox,
            clock,
            agent_names={a.id: a.name for a in self.config.agents},
            policies={c.name: c.outbox for c in self.config.channels},
            services=self.services,
        )
        self.services.wake_outbox = self.outbox.poke
        # Issue 14: agents' files go out as the channel can carry them (gateway/workspace/files.py).
        self.files = AgentFiles(
            self.store,
            Texts(self.config.texts.overrides(), self.config.texts.default_language),
            self.public_url,
            self.config.agent_attachments.link_ttl,
            clock,
        )
        self.outbox.attach = self.files.attach
        # Issue 11: the other instances (gateway/coord/); `redis` is the shared client.
        self.coordinator = make_coordinator(self)
        self.outbox.send = self.coordinator.send
        self.services.wake_routing = self.dispatcher.poke
        # Texts for customers, in their language (gateway/i18n.py).
        self.texts = Texts(self.config.texts.overrides(), self.config.texts.default_language)
        self.ingestor = Ingestor(
            self.store,
            self.services,
            self.config.routing,
            self.config.conversations.reopen_window,
            clock,
            acknowledger=Acknowledger(
                self.config.conversations.acknowledgement,
                self.store,
                self.services.reply,
                clock,
                self.texts,
            ),
        )
        # Issue 14: the agent workspace's actions, and snoozed conversations waking.
        self.inbox = Inbox(self.services)
        self.deadlines.add(SnoozeSource(self.services))
        # Issue 12: escalation steps, offer timeouts, no-reply and offline requeueing.
        for source in (EscalationTimer, OfferTimeouts, NoReplyTimer, OfflineTimer):
            self.deadlines.add(source(self.store, self.services, lambda: self.config.routing))
        # Surveys after resolution (gateway/surveys/): a deadline source, and answers taken
        # before ingest.
        self.surveys: Surveys | None = None
        if self.config.surveys is not None:
            self.surveys = Surveys(
                self.config.surveys,
                self.store,
                self.services,
                self.texts,
                clock,
                {c.name: self.registry.get(c.type).kind for c in self.config.channels},
                self.public_url,
            )
            self.deadlines.add(self.surveys)
            self.ingestor.intercept = self.surveys.intercept
        # Issue 15: article suggestions for the chat widget (gateway/kb/suggest.py).
        self.suggester = Suggester(lambda: self.loaded.kb, self.texts, self.services)
        self.ingestor.title_articles = self.suggester.title
        self.ingestor.bot = KbBot(
            lambda: self.loaded.kb,
            lambda: self.config.knowledge_base,
            lambda: self.config.routing,
            self.texts,
            self.store,
            self.services,
            self.public_url,
            clock,
        )
        # Issue 15: the customer portal (gateway/portal/): signed links, the page, answers.
        self.portal: Portal | None = Portal(
            lambda: self.config.portal,
            self.store,
            self.ingestor,
            self.texts,
            clock,
            self.public_url,
            lambda: {c.name: self.registry.get(c.type).kind for c in self.config.channels},
            rates=self._shared_rates("portal:"),
        )
        # Issue 15: external bots by signed webhook (gateway/bots/stage.py).
        self.bot_stage = WebhookBotStage(
            lambda: self.config.bots,
            lambda: self.config.routing,
            self.texts,
            self.store,
            self.services,
            clock,
        )
        self.ingestor.webhook_bot = self.bot_stage
        self.deadlines.add(IdleSource(self.bot_stage))
        self.quarantine = QuarantineService(
            self.store, self.services, clock, self.connectors, self.ingestor.submit
        )
        self.webhooks = WebhookSender(self.config.webhooks, self.store)
        # Agent presence heartbeats (gateway/coord/presence.py): lapsed consoles go offline.
        self.heartbeats: Heartbeats = LocalHeartbeats()
        if self.redis is not None:
            self.heartbeats = RedisHeartbeats(self.redis.redis, keys)
        self.presence = PresenceSweeper(self.heartbeats, self.store, self.services)
        self.deadlines.add(self.presence)
        # Who is viewing a conversation (gateway/workspace/viewing.py): in Redis when shared.
        self.viewers: Viewers = Viewers(self.services.announce, clock)
        if self.redis is not None:
            self.viewers = RedisViewers(
                self.redis.redis, keys, self.services.announce, clock, health=self.redis
            )
        if self.leases.shared:  # one instance sends to each endpoint, one runs the timers
            self.webhooks.leases = self.leases
            self.deadlines.lease = self.leases.lease("timers")
        self._time_work()
        # KPIs (issue 13): folds the event log into rollups; /v1/stats and /metrics read them.
        self.kpis = Kpis(
            self.store,
            self.bus,
            clock,
            worktime=kpi_hooks.worktime(self.config.routing),
            settle=kpi_hooks.sla_settle(
                self.config.routing, self.services, self.notices.times, clock
            ),
        )
        self.verifier = Verifier(
            self.store,
            self.services,
            {c.name: self.registry.get(c.type).kind for c in self.config.channels},
            clock,
        )
        self._states: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = False
        self.abandoned: list[str] = []  # what did not stop within the shutdown deadline
        server = self.config.server
        self.guard = ConnectionGuard(
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            idle_timeout=server.idle_timeout,
            max_connections=server.max_connections,
            max_connections_per_client=server.max_connections_per_client,
            trusted_proxies=server.trusted_proxies,
        )
        self.app = web.Application(
            middlewares=[
                self.guard.middleware,
                error_middleware,
                query_middleware,
            ],
            client_max_size=server.max_body_bytes,
        )
        self.app[GATEWAY] = self
        self.app[AUTH] = Authenticator(self.config.auth, self.config.agents)
        add_routes(self.app)
        surveys_web.add_routes(self.app)
        kb_web.add_routes(self.app)  # issue 15: /v1/kb/search and the help pages
        portal_web.add_routes(self.app)  # issue 15: the customer portal
        self.port: int | None = None

    def _time_work(self) -> None:
        """Issue 12: business hours, SLAs and the visible wait queue (gateway/time/sla.py,
        gateway/time/notices.py): timer sources, the closed reply, the live wait board."""
        routing = self.config.routing
        self.notices = TimeNotices(
            self.config.notices,
            routing,
            self.store,
            self.services,
            self.connectors,
            self.clock,
            self.texts,
        )
        self.ingestor.notices = self.notices
        self.bot_stage.closed_notice = self.notices.on_inbound
        self.bus.listen(self.notices.rate.on_event)
        self.wait_board = WaitBoard(self.notices)
        self.bus.listen(self.wait_board.on_event)
        if routing.sla is not None and routing.sla.policies:
            self.deadlines.add(SlaSource(self.notices.times, self.services, routing))
        if routing.hours:
            self.deadlines.add(OpeningSource(self.store, routing, self.dispatcher.poke))
        if self.config.notices.wait_after is not None:
            self.deadlines.add(WaitNoticeSource(self.notices))

    # --- services for the API --------------------------------------------------------------
    def publish(self, events: list[Event]) -> None:
        """Events the store has committed (for tools and tests; the core commits through
        `self.services`)."""
        self.services.committed(events)

    def _wake_routing(self, event: Event) -> None:
        """Routing runs when a committed event may have made work or capacity appear: no
        handler wakes the dispatcher by hand. (Its own assignments do not wake it again.)"""
        if event.type in ROUTING_EVENTS or (
            event.type == "conversation.assigned" and event.data.get("by") != "router"
        ):
            self.dispatcher.poke()

    async def reload(self) -> ReloadResult:
        """Re-read the config file and swap its live sections (gateway/reload.py)."""
        return await reload_config(self)

    def public_url(self) -> str:
        """The base URL customers reach this gateway at (links in messages)."""
        return self.config.server.public_url or f"http://{self.config.server.host}:{self.port}"

    async def send_reply(self, request: OutboundRequest) -> Message:
        return await self.services.reply(request)

    async def explain(self, facts: MessageFacts) -> dict[str, Any]:
        """The routing decision for a message against the live agents, changing nothing."""
        snap = await self.store.routing_state()  # agents and loads, not the backlog
        agents = self.dispatcher.snapshots(snap, facts.channel_type)
        now = self.clock()
        out = explain(self.config.routing, facts, agents, snap.rr_last, now)
        return to_dict(out, self.config.routing, facts.contact_attributes, now)

    async def agent_typing(self, conv: Conversation, who: str, typing: bool) -> None:
        self.services.announce(
            [
                ephemeral(
                    "conversation.typing",
                    {"conversation_id": conv.id, "from": "agent", "agent": who, "typing": typing},
                    self.clock(),
                )
            ]
        )
        connector = self.connectors.get(conv.last_channel)
        if (
            connector is None
            or Capability.TYPING not in connector.capabilities
            or conv.reply_kind is None
        ):
            return
        try:
            await asyncio.wait_for(
                connector.typing(
                    Identity(conv.reply_kind, conv.reply_address or ""), conv.id, typing
                ),
                5,
            )
        except Exception:
            log.warning("typing indicator not delivered", extra={"channel": conv.last_channel})
        await self.coordinator.typing(
            conv.last_channel,
            connector,
            Identity(conv.reply_kind, conv.reply_address or ""),
            conv.id,
            typing,
        )

    async def history(self, identity: Identity, limit: int) -> list[dict[str, Any]]:
        """A customer's recent messages across their conversations, oldest first."""
        try:
            contact = await self.store.find_contact(normalize(identity))
        except (NotFound, ValueError):
            return []
        rows, _ = await self.store.list_conversations(
            ConversationFilter(contact_id=contact.id, limit=5)
        )
        messages: list[dict[str, Any]] = []
        for conv in rows:
            for m in await self.store.messages(conv.id):
                item = m.to_api()
                # A survey still open comes back with its buttons (gateway/surveys/).
                prompt = m.metadata.get("prompt")
                if prompt and self.surveys is not None and await self.surveys.is_open(prompt):
                    item["prompt"] = prompt
                messages.append(item)
        messages.sort(key=lambda m: (m["created_at"], m["id"]))
        return messages[-limit:]

    async def availability(self) -> dict[str, Any]:
        states = await self.store.agent_states()
        configured = {a.id for a in self.config.agents}
        return {
            "agents_online": sum(1 for s in states if s.presence == "online" and s.id in configured)
        }

    def _availability_for(self, channel: str, kind: str) -> Callable[[], Awaitable[dict[str, Any]]]:
        """`availability` for one channel: the agents online who could take its new
        conversations (in their queue, with capacity for the channel's kind), plus
        `status` while that queue is closed."""

        async def availability() -> dict[str, Any]:
            queue = self.notices.channel_queue(channel, kind)
            able = {
                a.id for a in self.config.agents if queue in a.queues and a.capacity_for(kind) > 0
            }
            states = await self.store.agent_states()
            info: dict[str, Any] = {
                "agents_online": sum(1 for s in states if s.presence == "online" and s.id in able)
            }
            status = self.notices.channel_status(channel, kind, self.clock())
            if status is not None:
                info["status"] = status
            return info

        return availability

    def channel_states(self) -> dict[str, str]:
        return dict(self._states)

    async def channel_health(self) -> dict[str, str]:
        """Each channel's state; a running channel with unreviewed quarantined items is
        `degraded` (it works, but something it was handed is waiting for a person)."""
        states = dict(self._states)
        for name, count in (await self.quarantine.refresh_gauge()).items():
            if states.get(name) == "running" and count:
                states[name] = f"degraded: {count} quarantined"
        return states

    def track(self, ws: web.WebSocketResponse) -> None:
        self._sockets.add(ws)

    def untrack(self, ws: web.WebSocketResponse) -> None:
        self._sockets.discard(ws)

    # --- lifecycle -------------------------------------------------------------------------
    def _quarantine_for(self, channel: str) -> Callable[[RawItem, str], Awaitable[str]]:
        async def keep(item: RawItem, reason: str) -> str:
            return await self.quarantine.keep(channel, item, reason)

        return keep

    def _verification_for(self, channel: str) -> tuple[VerifyStart, VerifyConfirm]:
        async def start(
            claimant: Identity, claimed: Identity, language: str, via: str | None
        ) -> VerificationResult:
            return await self.verifier.start(
                channel, normalize(claimant), normalize(claimed), language, via
            )

        async def confirm(claimant: Identity, code: str) -> VerificationResult:
            return await self.verifier.confirm(channel, normalize(claimant), code)

        return start, confirm

    def _add_route(
        self,
        method: str,
        path: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> None:
        self.app.router.add_route(method, path, handler)

    def _channel_leases(self, channel: str, kv: ChannelKV) -> LeaseFactory | None:
        """A channel's leases (`lease:channel:<name>:<lease>`); None with one instance."""
        if not self.leases.shared:
            return None

        def lease(name: str) -> ChannelLease:
            inner = self.leases.lease(f"channel:{channel}:{name}")
            return ChannelLease(inner, kv.set, kv.set_fenced, kv.get)

        return lease

    def _channel_rates(self, channel: str) -> RateLimiter | None:
        """A channel's rate limits shared by every instance (Redis); None: in process."""
        return self._shared_rates(f"channel:{channel}:")

    def _shared_rates(self, namespace: str) -> RateLimiter | None:
        """Rate limits under `namespace` shared by every instance (Redis, falling back to
        this process's on Redis errors); None without Redis: in process."""
        if self.redis is None:
            return None
        from gateway.coord.ratelimit import RedisRateLimiter

        keys = Keys(self.config.coordination.prefix)
        return RedisRateLimiter(self.redis.redis, keys, namespace, health=self.redis)

    def _build_connectors(self) -> None:
        assert self._http is not None
        public = self.config.server.public_url or ""
        for channel in self.config.channels:
            cls = self.registry.get(channel.type)
            info = ChannelInfo(channel.name, cls.kind)
            verify_start, verify_confirm = self._verification_for(channel.name)
            kv = ChannelKV(self.store, f"channel:{channel.name}", self.clock)
            ctx = ConnectorContext(
                submit=self.quarantine.submitter(info, cls.refusals_reach_sender),
                http=self._http,
                add_route=self._add_route,
                kv=kv,
                leases=self._channel_leases(channel.name, kv),
                rates=self._channel_rates(channel.name),
                log=logging.LoggerAdapter(
                    logging.getLogger(f"switchboard.channel.{channel.name}"),
                    {"channel": channel.name},
                ),
                public_url=public,
                max_body_bytes=self.config.server.max_body_bytes,
                history=self.history,
                availability=self._availability_for(channel.name, cls.kind),
                quarantine=self._quarantine_for(channel.name),
                verify_start=verify_start,
                verify_confirm=verify_confirm,
                clock=self.clock,
                suggest=self.suggester.suggest if self.loaded.kb is not None else None,
                suggestion_event=self.suggester.events_for(channel.name),
                portal_link=(
                    self.portal.widget_link
                    if self.portal is not None and self.config.portal.enabled
                    else None
                ),
                invitation_event=_invitation_counter(channel.name),
            )
            self.connectors[channel.name] = cls(
                channel.name, self.loaded.channel_settings[channel.name], ctx
            )
            self._states[channel.name] = "starting"
            METRICS.channel_up.labels(channel.name).set(0)

    async def start(self) -> None:
        """Open the store, mount and start everything, listen. Returns once serving."""
        await self.store.open()
        await self.coordinator.start()
        released = await self.store.outbox_release_all()
        if released:
            log.info("outbox leases released after restart", extra={"count": released})
        await self.store.sync_agents(
            [(a.id, a.presence, dict(a.capacity)) for a in self.config.agents]
        )
        if self.surveys is not None:
            await self.surveys.start()
        # (The shared Redis client was started by the coordinator.)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._build_connectors()
        openapi.mount(self.app, self.connectors.values())
        await self.webhooks.start(self.bus, self._http)
        self.bot_stage.http = self._http
        await self.bot_stage.recover()  # bot calls cut off by the last stop: to a person
        server = self.config.server
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=server.shutdown_timeout,
            keepalive_timeout=server.idle_timeout,
        )
        await self._runner.setup()
        # Connections are accepted by the guard: caps, header and idle timeouts, no log
        # storm when the process runs out of descriptors (gateway/connections.py).
        await GuardedSite(self._runner, self.guard, server.host, server.port).start()
        self.port = self.guard.port
        if "max_connections" in server.model_fields_set and (
            self.guard.max_connections < server.max_connections
        ):
            log.warning(
                "server.max_connections lowered to fit the open-file limit",
                extra={
                    "configured": server.max_connections,
                    "effective": self.guard.max_connections,
                    "nofile": self.guard.nofile,
                },
            )
        if not self.config.server.public_url:
            for connector in self.connectors.values():
                connector.ctx.public_url = f"http://{self.config.server.host}:{self.port}"
        for name, connector in self.connectors.items():
            self._spawn(self._start_channel(name, connector))
        await self.dispatcher.start()
        await self.outbox.start()
        await self.deadlines.start()
        await self.wait_board.start()
        await self.kpis.start()
        self._spawn(self._prune_events())
        log.info(
            "switchboard started",
            extra={
                "instance": self.instance,
                "host": self.config.server.host,
                "port": self.port,
                "channels": len(self.connectors),
                "max_connections": self.guard.max_connections,
                "coordination": self.coordinator.status,
            },
        )

    async def prune_events(self) -> int:
        """Remove the events older than `events.retention` (and beyond `max_events`)."""
        cfg = self.config.events
        await self.kpis.catch_up()  # the KPI rollups take every event before it goes
        removed = await self.store.prune_events(self.clock() - cfg.retention, cfg.max_events)
        if removed:
            log.info(
                "old events pruned",
                extra={
                    "count": removed,
                    "pruned_through": await self.store.events_pruned_through(),
                },
            )
        return removed

    async def _prune_events(self) -> None:
        while not self._stopped:  # not only the cancellation: Python 3.11 can lose it
            try:
                await self.prune_events()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning old events failed; retrying later")
            await asyncio.sleep(self.config.events.prune_interval)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_channel(self, name: str, connector: Connector) -> None:
        """Start the channel, retrying while it is not ready. Why it is not is logged at
        warning the first time and when it changes; the same reason again only at debug."""
        delay = CHANNEL_RETRY_FIRST
        last_reason: str | None = None
        while not self._stopped:  # not only the cancellation: Python 3.11 can lose it
            try:
                await connector.start()
            except NotReady as exc:
                reason = start_failure_reason(exc)
                self._states[name] = f"not_ready: {reason}"
                extra = {"channel": name, "reason": reason, "retry_in": delay}
                if reason != last_reason:
                    log.warning("channel not ready; retrying", extra=extra)
                else:
                    log.debug("channel still not ready; retrying", extra=extra)
                last_reason = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, CHANNEL_RETRY_MOST)
                continue
            except AuthFailed as exc:
                reason = start_failure_reason(exc)
                self._states[name] = f"auth_failed: {reason}"
                log.error(
                    "channel stopped: authentication failed",
                    extra={"channel": name, "reason": reason},
                )
                return
            except Exception as exc:
                self._states[name] = f"failed: {type(exc).__name__}"
                log.exception("channel failed to start", extra={"channel": name})
                return
            self._states[name] = "running"
            METRICS.channel_up.labels(name).set(1)
            if last_reason is not None:
                log.info("channel ready after retrying", extra={"channel": name})
            return

    async def _drain_requests(self, within: float) -> None:
        """Let in-flight handlers finish, cancel those still running, and clean the runner
        up, all within `within` seconds. The runner's own shutdown timeout was fixed when it
        was made; the low-level server's public `shutdown(timeout)` takes the time that is
        left now, after which the runner's cleanup finds no connection left to wait for.

        aiohttp spends `timeout` twice: waiting for the handler, then again for it to end
        once cancelled; and it rounds a timeout over 5 s up to a whole second. So each phase
        gets half of what is left, less that rounding."""
        runner = self._runner
        if runner is None:
            return
        server = runner.server
        if server is not None:
            await asyncio.sleep(0)  # requests accepted before the sites stopped get going
            server.pre_shutdown()  # idle keep-alive connections close now (aiohttp >= 3.9)
            phase = max(0.0, within - 0.1) / 2
            if phase > 5:
                phase -= 1.0
            await server.shutdown(phase)
        await runner.cleanup()

    async def stop(self) -> None:
        """Graceful, in order: stop accepting connections; end the event streams; stop the
        channels (no new inbound); let in-flight requests finish; stop routing and let
        in-flight sends finish; close the store. A second call does nothing.

        All of it within `server.shutdown_timeout`: a step still running at its latest end
        is cancelled and abandoned (logged once, listed in `abandoned`), and the steps after
        it still run. The steps that wait for others (channels, in-flight requests,
        in-flight sends) end by 40%, 70% and 100% of the budget less a reserve, so one stuck
        channel cannot take all the time of the sends; the reserve is kept for the quick
        steps that must happen whatever came before (stopping the loops, closing the store)."""
        if self._stopped:
            return
        self._stopped = True
        log.info("switchboard stopping")
        loop = asyncio.get_running_loop()
        timeout = self.config.server.shutdown_timeout
        start = loop.time()
        deadline = start + timeout
        budget = timeout - min(1.0, timeout / 4)
        channels_by, requests_by, sends_by = (start + budget * f for f in (0.4, 0.7, 1.0))

        def left(until: float) -> float:
            return max(0.0, until - loop.time())

        async def step(name: str, work: Awaitable[Any], until: float = deadline) -> None:
            """Run one step until `until` at most; abandon it after that."""
            task = asyncio.ensure_future(work)
            await asyncio.wait({task}, timeout=left(until))
            if not task.done():
                task.cancel()
                self.abandoned.append(name)
            elif not task.cancelled() and (exc := task.exception()) is not None:
                log.error("shutdown step failed", extra={"step": name}, exc_info=exc)

        if self._runner is not None:
            for site in list(self._runner.sites):
                await step("listening socket", site.stop())
        self.bus.close()
        await asyncio.gather(
            *(step("event stream", _close_quietly(ws), channels_by) for ws in list(self._sockets))
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(
                step(f"channel {name}", connector.stop(), channels_by)
                for name, connector in self.connectors.items()
            )
        )
        if self._runner is not None:
            await step("in-flight requests", self._drain_requests(left(requests_by)), requests_by)
        # The bot calls the last requests started (their conversations go to a person at
        # the next start).
        await step("bot calls", self.bot_stage.stop(left(deadline)))
        await step("routing", self.dispatcher.stop(left(deadline)))
        await step("deadlines", self.deadlines.stop(left(deadline)))
        await step("wait board", self.wait_board.stop(left(deadline)))
        await step("outbox", self.outbox.stop(left(sends_by)))
        await step("webhooks", self.webhooks.stop(left(deadline)))
        await step("kpis", self.kpis.stop(left(deadline)))
        await step("coordination", self.coordinator.stop())
        if self._http is not None:
            await step("HTTP client", self._http.close())
        await step("store", self.store.close())
        if self.abandoned:
            log.warning(
                "shutdown deadline passed: abandoned what had not stopped",
                extra={"abandoned": self.abandoned, "shutdown_timeout": timeout},
            )
        log.info("switchboard stopped")
