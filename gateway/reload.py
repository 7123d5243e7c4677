"""Reload the configuration without a restart (SIGHUP, `POST /v1/admin/reload`).

The file is read and validated whole first; a config with a problem is refused with
every problem listed (key path and line) and the running one stays. A valid one is
swapped in one step on the event loop (no await between the assignments), so a routing
pass, a request or a timer sees the old config or the new, never a mix; work in flight
(a pass, a send, an offer) finishes under the config it started with.

Live: `routing` (queues, rules, escalation, offers, reassignment, sticky, offline),
`agents` (skills, queues, names, capacity), `auth` (tokens, visibility),
`conversations`, `canned_replies`, `agent_attachments`, `bots` and `knowledge_base` (its
articles are read again). The other sections (server, store, channels, outbox, webhooks, events,
timers) need a restart: a reload that changes one of them is refused, naming them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.api.auth import Authenticator
from gateway.api.common import AUTH
from gateway.config import ConfigError, LoadedConfig, load_config
from gateway.store.base import escalation_store

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("switchboard.reload")

RESTART_ONLY = ("server", "store", "channels", "outbox", "webhooks", "events", "timers")
# Issue 14: read per request (canned replies, upload caps) or set here (link lifetime).
WORKSPACE_LIVE = ("canned_replies", "agent_attachments")


@dataclass
class ReloadResult:
    ok: bool
    problems: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {"reloaded": self.ok, "changed": self.changed, "problems": self.problems}


def _restart_needed(old: LoadedConfig, new: LoadedConfig) -> list[str]:
    out = [name for name in RESTART_ONLY if getattr(old.config, name) != getattr(new.config, name)]
    if "channels" not in out and old.channel_settings != new.channel_settings:
        out.append("channels")
    return out


def _articles(loaded: LoadedConfig) -> list[Any]:
    return list(loaded.kb.articles) if loaded.kb is not None else []


async def reload(gw: Gateway) -> ReloadResult:
    """Re-read the gateway's config file and swap the live sections."""
    path = gw.loaded.path
    if path is None:
        return ReloadResult(False, [{"path": "(file)", "message": "started without a file"}])
    try:
        new = load_config(path, registry=gw.registry)
    except ConfigError as exc:
        problems = [{"path": p.path, "line": p.line, "message": p.message} for p in exc.problems]
        log.error(
            "reload refused: invalid config; the running one stays",
            extra={"problems": [str(p) for p in exc.problems]},
        )
        return ReloadResult(False, problems)
    restart = _restart_needed(gw.loaded, new)
    if restart:
        problems = [
            {"path": name, "line": None, "message": "changed: needs a restart (refused)"}
            for name in restart
        ]
        log.error(
            "reload refused: sections that need a restart changed; the running config stays",
            extra={"sections": restart},
        )
        return ReloadResult(False, problems)
    old = gw.config
    changed = [
        name
        # `bots` (issue 15) is read per bot turn (gateway/bots/stage.py).
        for name in ("routing", "agents", "auth", "conversations", "bots", *WORKSPACE_LIVE)
        if getattr(old, name) != getattr(new.config, name)
    ]
    # Issue 15: the articles are read with the config and swapped with it (`gw.loaded.kb`).
    if _articles(gw.loaded) != _articles(new):
        changed.append("knowledge_base")
    cfg = new.config
    # Capacities first (the one await): if the store refuses, nothing was swapped.
    await gw.store.sync_agents([(a.id, a.presence, dict(a.capacity)) for a in cfg.agents])
    # The swap: plain assignments, no await in between.
    gw.loaded, gw.config = new, cfg
    gw.dispatcher.reconfigure(cfg)
    gw.ingestor.routing = cfg.routing
    gw.ingestor.reopen_window = cfg.conversations.reopen_window
    if gw.ingestor.acknowledger is not None:
        gw.ingestor.acknowledger.config = cfg.conversations.acknowledgement
    gw.outbox.agent_names = {a.id: a.name for a in cfg.agents}
    gw.files.ttl = cfg.agent_attachments.link_ttl
    # The app is frozen: the authenticator it holds takes the new tokens in place.
    Authenticator.__init__(gw.app[AUTH], cfg.auth, cfg.agents)
    if "routing" in changed:
        # Escalation steps are scheduled again against the new rules.
        await escalation_store(gw.store).waits_reschedule()
    gw.dispatcher.poke()
    gw.deadlines.poke()
    log.info("configuration reloaded", extra={"changed": changed})
    return ReloadResult(True, changed=changed)
