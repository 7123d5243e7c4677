"""Canned replies: who sees which, and filling in their placeholders."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from gateway.config_workspace import CannedReplyConfig
from gateway.i18n import FALLBACK, preferred_language
from gateway.store.workspace import CannedReply

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+\.[a-z_]+)\s*\}\}")


def from_config(cfg: CannedReplyConfig) -> CannedReply:
    """A canned reply of the config file (read-only; its id names its owner and shortcut)."""
    owner = f"{cfg.agent}:" if cfg.agent else ""
    return CannedReply(
        id=f"config:{owner}{cfg.shortcut}",
        shortcut=cfg.shortcut,
        title=cfg.title,
        texts={str(k): v for k, v in cfg.text.items()},
        scope="personal" if cfg.agent else "team",
        queues=list(cfg.queues),
        agent=cfg.agent,
        source="config",
    )


def visible(reply: CannedReply, agent: str | None, queues: Sequence[str] | None) -> bool:
    """Whether a caller sees a reply. `agent`: the agent it acts as (None: an admin, who
    sees all); `queues`: that agent's queues (None: every queue, e.g. a supervisor)."""
    if reply.scope == "personal":
        return agent is None or reply.agent == agent
    return queues is None or not reply.queues or bool(set(reply.queues) & set(queues))


def matches(reply: CannedReply, q: str | None, queue: str | None) -> bool:
    """The list's filters: `q` in the shortcut or title; team replies of `queue`."""
    if q:
        needle = q.lower().lstrip("/")
        if needle not in reply.shortcut.lower() and needle not in reply.title.lower():
            return False
    return not (queue and reply.scope == "team" and reply.queues and queue not in reply.queues)


def language(texts: Mapping[str, str], attributes: Mapping[str, str], default: str) -> str:
    """The variant to use: the contact's language, else the configured default, else
    English, else whichever there is."""
    for lang in (preferred_language(attributes), default, FALLBACK):
        if lang and lang in texts:
            return lang
    return sorted(texts)[0]


def render(template: str, values: Mapping[str, str | None]) -> str:
    """Fill `{{contact.name}}`-style placeholders; an unknown one is left as written, a
    known one without a value becomes empty (and the space before a comma goes with it)."""

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            return m.group(0)
        return values[key] or ""

    text = PLACEHOLDER.sub(fill, template)
    return re.sub(r"[ \t]+([,.!?])", r"\1", text) if text != template else text
