"""The knowledge-base bot stage (issue 15): `bot: knowledge_base` on a routing rule.

A new conversation taken by such a rule, whose first message has a good public article
(score ≥ `knowledge_base.bot_min_score`) in the contact's language (the contact's
`language` attributes, else the message's own words, else the default), is held in
BOT_QUEUE — a queue no agent serves, so routing never assigns it — answered with the
article on its own channel, and resolved by the bot. The customer's next message reopens
it, and the bot hands it off at once: it is transferred to the rule's queue (else the
default) with reason `bot handoff`, for a person. Every answer says so ("reply 'agent' /
'Mensch'"), and a first message that is only such a keyword skips the bot.

Loop guard: never for an automated message (auto-replies, bounces); at most
MAX_AUTOMATIC automatic messages per contact per day (else straight to a person). One
answer per conversation: the bot never talks twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.i18n import Texts, preferred_language
from gateway.kb.config import KB_BOT_QUEUE, KnowledgeBaseConfig
from gateway.kb.search import Hit, KnowledgeBase, plain_text
from gateway.kb.text import detect_language, fold, words
from gateway.metrics import METRICS
from gateway.model import Conversation, Message
from gateway.store.base import Classification, IngestOutcome, OutboundRequest, Store
from router import RoutingConfig
from router.reasons import Reason

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("switchboard.kb.bot")

BOT_QUEUE = KB_BOT_QUEUE
HOLD_REASON = Reason("core.kb_holds")
MAX_AUTOMATIC = 3
AUTOMATIC_WINDOW = 86400.0
MAX_ANSWER_CHARS = 1500


class KbBot:
    def __init__(
        self,
        knowledge_base: Callable[[], KnowledgeBase | None],
        config: Callable[[], KnowledgeBaseConfig | None],
        routing: Callable[[], RoutingConfig],
        texts: Texts,
        store: Store,
        services: Services,
        public_url: Callable[[], str],
        clock: Callable[[], float],
    ) -> None:
        self.knowledge_base = knowledge_base
        self.config = config
        self.routing = routing
        self.texts = texts
        self.store = store
        self.services = services
        self.public_url = public_url
        self.clock = clock
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # --- the decision (pure; runs in the classifier) ---------------------------------------
    def _bot_rule(self, rules: list[str]) -> str | None:
        by_name = {r.name: r for r in self.routing().rules}
        return next((n for n in rules if n in by_name and by_name[n].bot == "knowledge_base"), None)

    def wants_person(self, text: str) -> bool:
        cfg = self.config()
        keywords = {fold(k) for k in (cfg.handoff_keywords if cfg else [])}
        found = [fold(w) for _, _, w in words(text)]
        return bool(found) and len(found) <= 3 and any(w in keywords for w in found)

    def language(self, text: str, attributes: dict[str, str]) -> str:
        return preferred_language(attributes) or detect_language(text) or self.texts.default

    def answer_for(self, text: str, language: str) -> Hit | None:
        kb, cfg = self.knowledge_base(), self.config()
        if kb is None or cfg is None:
            return None
        hits = kb.search(text, language, limit=1, min_score=cfg.bot_min_score)
        return hits[0] if hits else None

    def hold(
        self, c: Classification, text: str, automated: bool, attributes: dict[str, str]
    ) -> Classification:
        """`c`, or the same held for the bot when a bot rule took it and it can answer."""
        if automated or self._bot_rule(c.rules or ([c.rule] if c.rule else [])) is None:
            return c
        if (
            self.wants_person(text)
            or self.answer_for(text, self.language(text, attributes)) is None
        ):
            return c
        return Classification(
            BOT_QUEUE,
            c.priority,
            c.required_skills,
            c.tags,
            c.rule,
            [*c.reasons, HOLD_REASON],
            c.rules,
        )

    # --- after the ingest ------------------------------------------------------------------
    async def after_ingest(self, outcome: IngestOutcome, text: str) -> bool:
        """Answer a conversation held for the bot, or hand a reopened one off; True when
        the conversation was the bot's (no acknowledgement, no closed notice then)."""
        conv, message = outcome.conversation, outcome.message
        if outcome.duplicate or conv is None or conv.queue != BOT_QUEUE:
            return False
        # One conversation at a time: a second message while the bot answers waits, then
        # hands off (the answer's resolve comes first, the reopen after it).
        lock, users = self._locks.get(conv.id, (asyncio.Lock(), 0))
        self._locks[conv.id] = (lock, users + 1)
        try:
            async with lock:
                if outcome.created and message is not None:
                    await self._answer(conv, message, text)
                else:
                    await self._handoff(conv.id, conv, "the customer wrote again")
        finally:
            lock, users = self._locks[conv.id]
            if users <= 1:
                del self._locks[conv.id]
            else:
                self._locks[conv.id] = (lock, users - 1)
        return True

    def _target(self, conv: Conversation) -> str:
        routing = self.routing()
        rule = next((r for r in routing.rules if r.name == conv.routing.get("rule")), None)
        return (rule.then.queue if rule is not None else None) or routing.default.queue

    async def _handoff(self, conversation_id: str, conv: Conversation, why: str) -> None:
        target = self._target(conv)
        current = await self.store.get_conversation(conversation_id)
        if current.queue != BOT_QUEUE:
            return
        if current.status == "resolved":
            await self.services.reopen(conversation_id, "bot")
        await self.services.transfer(conversation_id, target, "bot")
        log.info(
            "bot handed off to a person",
            extra={"conversation": conversation_id, "queue": target, "why": why},
        )

    async def _answer(self, conv: Conversation, message: Message, text: str) -> None:
        now = self.clock()
        contact = await self.store.get_contact(conv.contact_id)
        language = self.language(text, dict(contact.attributes))
        hit = self.answer_for(text, language)
        if hit is None:
            await self._handoff(conv.id, conv, "no article any more")
            return
        if message.automated or (
            await self.store.automatic_count(conv.contact_id, now - AUTOMATIC_WINDOW)
            >= MAX_AUTOMATIC
        ):
            await self._handoff(conv.id, conv, "automatic-message cap")
            return
        await self.services.reply(
            OutboundRequest(
                conv.id,
                self.compose(hit, language),
                "bot",
                None,
                now,
                automatic=True,
                metadata={"kb_answer": {"slug": hit.article.slug, "language": language}},
            )
        )
        await self.services.resolve(conv.id, "bot")
        METRICS.self_service.labels("resolved_by_bot").inc()
        log.info(
            "bot answered from the knowledge base",
            extra={"conversation": conv.id, "article": hit.article.slug},
        )

    def compose(self, hit: Hit, language: str) -> str:
        article = hit.article
        body = plain_text(article.body)
        if len(body) > MAX_ANSWER_CHARS:
            body = body[:MAX_ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
        link = f"{self.public_url().rstrip('/')}{article.url()}"
        return (
            f"{article.title}\n\n{body}\n\n"
            f"{self.texts.text('kb.bot.more', language)} {link}\n\n"
            f"{self.texts.text('kb.bot.handoff', language)}"
        )
