"""Article suggestions for a channel's visitors (the web chat widget, issue 15): the core's
side of `ctx.suggest` and `ctx.suggestion_event`.

Suggestions are the public articles in the visitor's language that score well enough: at
least MIN_SCORE and a fair share of the best one's score, so a stray word suggests nothing.
What the visitor did with them is appended to the event log as `kb.suggestion.shown`,
`kb.suggestion.clicked` and `kb.suggestion.answered` (`helpful`: yes or no)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connectors.base import Identity, SuggestionEvent
from gateway.i18n import Texts
from gateway.kb.search import KnowledgeBase
from gateway.kb.text import LANGUAGES
from gateway.metrics import METRICS

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("switchboard.kb")

MIN_SCORE = 1.0
SHARE_OF_BEST = 0.4
MAX_SUGGESTIONS = 3
MAX_TEXT = 500
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
TEXT_KEYS = ("heading", "question", "yes", "no", "glad")


def article_refs(value: Any, limit: int = 5) -> list[dict[str, str]] | None:
    """`[{slug, language}]` as a channel passed them; None when malformed."""
    if not isinstance(value, list) or len(value) > limit:
        return None
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            return None
        slug, lang = item.get("slug"), item.get("language")
        if not isinstance(slug, str) or not _SLUG.match(slug) or lang not in LANGUAGES:
            return None
        out.append({"slug": slug, "language": str(lang)})
    return out


class Suggester:
    def __init__(
        self,
        knowledge_base: Callable[[], KnowledgeBase | None],
        texts: Texts,
        services: Services,
    ) -> None:
        self.knowledge_base = knowledge_base
        self.texts = texts
        self.services = services

    async def suggest(self, text: str, language: str) -> dict[str, Any]:
        kb = self.knowledge_base()
        lang = language if language in LANGUAGES else self.texts.default
        texts = {key: self.texts.text(f"kb.suggest.{key}", lang) for key in TEXT_KEYS}
        if kb is None or not text.strip():
            return {"items": [], "texts": texts}
        hits = kb.search(text[:MAX_TEXT], lang, limit=MAX_SUGGESTIONS)
        best = hits[0].score if hits else 0.0
        items = [
            {
                "slug": h.article.slug,
                "language": h.article.language,
                "title": h.article.title,
                "url": h.article.url(),
                "snippet": [[piece, marked] for piece, marked in h.snippet_parts],
            }
            for h in hits
            if h.score >= MIN_SCORE and h.score >= SHARE_OF_BEST * best
        ]
        return {"items": items, "texts": texts}

    def title(self, refs: list[dict[str, Any]]) -> None:
        """Give each `{slug, language}` the title of its article, where it exists."""
        kb = self.knowledge_base()
        if kb is None:
            return
        for ref in refs:
            if not isinstance(ref, dict):
                continue
            article = kb.get(str(ref.get("language")), str(ref.get("slug")))
            if article is not None:
                ref["title"] = article.title

    def events_for(self, channel: str) -> SuggestionEvent:
        async def record(visitor: Identity, event: str, data: dict[str, Any]) -> None:
            refs = article_refs(data.get("items"))
            if refs is None:
                return
            entry: dict[str, Any] = {
                "channel": channel,
                "visitor": f"{visitor.kind}:{visitor.address}",
                "articles": refs,
            }
            self.title(refs)
            if event == "answered":
                entry["helpful"] = data.get("helpful") is True
            try:
                await self.services.kb_suggestion(event, entry)
            except ValueError:
                log.debug("unknown suggestion event ignored", extra={"event": event[:32]})
                return
            if event == "answered":  # issue 15: the self-service rate
                METRICS.self_service.labels(
                    "kb_helpful" if entry["helpful"] else "kb_unhelpful"
                ).inc()

        return record
