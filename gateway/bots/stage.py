"""The external bot stage (issue 15): `bot: {webhook: NAME}` on a routing rule.

A new conversation such a rule takes is held in BOT_QUEUE — a queue no agent serves, so
routing never assigns it — and each customer message of it is POSTed, signed, to the bot
NAME of `bots:` (gateway/bots/webhook.py), in the background: the channel has its answer
as soon as the message is stored. The bot answers or asks back (sent on the customer's
channel; the conversation stays with the bot) or hands off. The gateway hands off for it
when the bot fails or times out, when the customer writes a handoff keyword ("agent",
"Mensch"), after `max_turns` bot messages, for an automated sender, and when the bot is
no longer configured.

A handoff classifies the conversation again with the handoff's facts (router/handoff.py),
moves it to the queue that gives, tells the customer a person takes over (in their
language) and leaves the bot's summary as an internal note for the agent. Events:
`bot.answered`, `bot.asked`, `bot.handoff`; counter `switchboard_bot_turns_total`.

Restart: a conversation left in the bot stage whose last message is the customer's (the
bot call was cut off by the stop or crash) is handed off with reason `restart`, not
retried: the customer waited once already. It happens once the bot's timeout (plus a
second) has passed since that message, so a call another instance is making for it has
its chance. One waiting for the customer stays.

An answer with `"resolve": true` resolves the conversation (`bot:<name>`: self-service);
a customer who goes quiet for the bot's `idle_after` is resolved by `IdleSource`
(`idle:<name>`). Writing again within the reopen window goes on with the bot.

State is the conversation itself: the bot's turns are its messages marked `bot` in their
metadata (with the customer message each answers, `reply_to`). Only the turn under way is
kept besides: a claim in the store (`bot_turn_claim`, with an expiry), so one turn of a
conversation runs at a time across instances, in the order the messages came.

While in the bot stage a conversation is not in any wait queue a customer is shown (no
position, no long-wait message: gateway/time/notices.py leaves BOT_QUEUE out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.bots.config import BOT_QUEUE, WebhookBotConfig
from gateway.bots.webhook import BotAnswer, BotFailure, call_bot
from gateway.clock import iso
from gateway.eventloop import stop_tasks
from gateway.i18n import Texts, preferred_language, primary
from gateway.kb.text import detect_language, fold, words
from gateway.metrics import METRICS
from gateway.model import ACTIVE_STATUSES, Conversation, Message
from gateway.store.base import (
    BotHandoff,
    Classification,
    Conflict,
    ConversationFilter,
    IngestOutcome,
    OutboundRequest,
    Store,
)
from gateway.store.workspace import workspace_store
from router import PRIORITY_RANK, Handoff, MessageFacts, RoutingConfig, route_handoff
from router.reasons import Reason, extend_localized
from router.schedule import place

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("switchboard.bots")

__all__ = ["BOT_QUEUE", "IdleSource", "WebhookBotStage", "hold_reason"]

MAX_TRANSCRIPT_CHARS = 2000
# After a restart, a cut-off call's message is handed off this long after the bot's timeout.
RESTART_MARGIN = 1.0
# A turn's claim in the store lasts this long and is renewed every third of it while the
# turn runs: an instance that dies holding it blocks the conversation this long at most.
TURN_TTL = 10.0
# A turn waits for an earlier message's turn (on another instance, maybe behind others) up
# to the bot's timeout and this much more after that message came; older, it was cut off.
TURN_MARGIN = 30.0
# How often a turn asks again for a claim another instance holds.
TURN_POLL = 0.1


def _bot_turn(m: Message) -> bool:
    """An answer or question of the external bot (not a notice, an acknowledgement...)."""
    meta = m.metadata.get("bot")
    return (
        m.direction == "out" and isinstance(meta, dict) and meta.get("action") in ("answer", "ask")
    )


def unanswered_before(history: list[Message], message_id: str) -> list[Message]:
    """The customer's messages before `message_id` that no bot turn answered (a turn's
    message names the one it answers: `reply_to`): their turns come first (one may be
    waiting on another instance)."""
    answered = {m.metadata["bot"].get("reply_to") for m in history if _bot_turn(m)}
    waiting: list[Message] = []
    for m in history:
        if m.id == message_id:
            return waiting
        if _bot_turn(m) and "reply_to" not in m.metadata["bot"]:
            waiting = []  # a turn from before `reply_to`: it answered what came before it
        elif m.direction == "in" and m.id not in answered:
            waiting.append(m)
    return []


def hold_reason(bot: str) -> Reason:
    return Reason("core.bot_holds", bot=repr(bot))


class WebhookBotStage:
    def __init__(
        self,
        bots: Callable[[], dict[str, WebhookBotConfig]],
        routing: Callable[[], RoutingConfig],
        texts: Texts,
        store: Store,
        services: Services,
        clock: Callable[[], float],
    ) -> None:
        self.bots = bots
        self.routing = routing
        self.texts = texts
        self.store = store
        self.services = services
        self.clock = clock
        # Set by the gateway when it starts (its aiohttp client session).
        self.http: aiohttp.ClientSession | None = None
        # Set by the gateway (gateway/time/notices.py): the closed reply for a conversation
        # handed to a queue that is closed now, instead of "connecting you to a person".
        self.closed_notice: Callable[[Conversation, Message], Awaitable[Message | None]] | None = (
            None
        )
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the decision (pure; runs in the classifier) ---------------------------------------
    def bot_of(self, rules: list[str]) -> str | None:
        """The bot of the first of `rules` that names one (a webhook bot), else None."""
        by_name = {r.name: r for r in self.routing().rules}
        for name in rules:
            rule = by_name.get(name)
            if rule is not None and rule.bot is not None:
                return getattr(rule.bot, "webhook", None)
        return None

    def wants_person(self, text: str, cfg: WebhookBotConfig) -> bool:
        """A short message that names a handoff keyword."""
        keywords = {fold(k) for k in cfg.keywords()}
        found = [fold(w) for _, _, w in words(text)]
        return bool(found) and len(found) <= 3 and any(w in keywords for w in found)

    def hold(self, c: Classification, text: str, automated: bool) -> Classification:
        """`c`, or the same held for the bot when a rule with `bot: {webhook: ...}` took
        it (never for an automated sender, nor for a first message asking for a person)."""
        name = self.bot_of(c.rules or ([c.rule] if c.rule else []))
        cfg = self.bots().get(name) if name is not None else None
        if automated or cfg is None or self.wants_person(text, cfg):
            return c
        return Classification(
            BOT_QUEUE,
            c.priority,
            c.required_skills,
            c.tags,
            c.rule,
            [*c.reasons, hold_reason(name or "")],
            c.rules,
        )

    # --- after the ingest ------------------------------------------------------------------
    def after_ingest(self, outcome: IngestOutcome, text: str) -> bool:
        """Start the bot's turn for a message of a conversation in the bot stage; True
        when the conversation is the bot's (no acknowledgement, no closed notice then)."""
        conv, message = outcome.conversation, outcome.message
        if (
            outcome.duplicate
            or conv is None
            or message is None
            or conv.queue != BOT_QUEUE
            or conv.assignee is not None  # a person took it from the bot by hand
        ):
            return False
        self._spawn(self._turn(conv.id, message, text))
        return True

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for the bot calls under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self, timeout: float) -> None:
        """Cut the calls under way; their conversations are handed off at the next start."""
        tasks, self._tasks = list(self._tasks), set()
        await stop_tasks(tasks, timeout, "bot calls")

    def busy(self, conversation_id: str) -> bool:
        """A turn (or a handoff) of the conversation is under way in this process."""
        return conversation_id in self._locks

    async def _locked(
        self, conversation_id: str, work: Callable[[], Any], message: Message | None = None
    ) -> None:
        """One turn of a conversation at a time, in the order the messages came: in this
        process by a lock (in order of arrival), across instances by a claim in the store,
        renewed while the turn runs, that expires (an instance that dies holding it blocks
        the others only until then). The bot's call runs between short transactions, never
        inside one."""
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                holder = await self._claim(conversation_id, message)
                renewing = asyncio.ensure_future(self._renew(conversation_id, holder))
                try:
                    await work()
                finally:
                    renewing.cancel()
                    await asyncio.wait([renewing])
                    await self._release(conversation_id, holder)
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)

    def _patience(self) -> float:
        return max((cfg.timeout for cfg in self.bots().values()), default=0.0) + TURN_MARGIN

    async def _claim(self, conversation_id: str, message: Message | None) -> str:
        """Wait for the conversation's turn in the store; returns the holder to release.
        A turn for `message` also lets the turns of the customer's earlier messages that
        are still under way (on other instances) go first, so answers keep their order."""
        holder = f"turn_{secrets.token_hex(8)}"
        patience = self._patience()
        while True:
            if await self.store.bot_turn_claim(conversation_id, holder, TURN_TTL):
                if message is None:
                    return holder
                history = await self.store.messages(conversation_id)
                now = self.clock()
                if not any(
                    m.created_at + patience > now for m in unanswered_before(history, message.id)
                ):
                    return holder
                await self.store.bot_turn_release(conversation_id, holder)
            await asyncio.sleep(TURN_POLL)

    async def _renew(self, conversation_id: str, holder: str) -> None:
        """Keep the claim while the turn runs (cancelled when it ends)."""
        while True:
            await asyncio.sleep(TURN_TTL / 3)
            try:
                if not await self.store.bot_turn_claim(conversation_id, holder, TURN_TTL):
                    log.warning("bot turn claim lost", extra={"conversation": conversation_id})
                    return
            except Exception as exc:  # the store is away: the claim may run out meanwhile
                log.warning(
                    "bot turn claim not renewed",
                    extra={"conversation": conversation_id, "error": type(exc).__name__},
                )

    async def _release(self, conversation_id: str, holder: str) -> None:
        try:
            await self.store.bot_turn_release(conversation_id, holder)
        except Exception as exc:  # the claim expires by itself
            log.warning(
                "bot turn not released",
                extra={"conversation": conversation_id, "error": type(exc).__name__},
            )

    async def _turn(self, conversation_id: str, message: Message, text: str) -> None:
        async def work() -> None:
            try:
                await self._take(conversation_id, message, text)
            except Exception:  # the message is stored; a person must still get it
                log.exception("bot stage failed", extra={"conversation": conversation_id})
                try:
                    await self.handoff(conversation_id, Handoff("bot_failed"), notify=True)
                except Exception:
                    log.exception("bot handoff failed", extra={"conversation": conversation_id})

        try:
            await self._locked(conversation_id, work, message)
        except Exception:  # no claim (the store is down): the restart or idle path takes it
            log.exception("bot turn not started", extra={"conversation": conversation_id})

    async def _take(self, conversation_id: str, message: Message, text: str) -> None:
        conv = await self.store.get_conversation(conversation_id)
        if conv.queue != BOT_QUEUE or conv.status not in ACTIVE_STATUSES or conv.assignee:
            return  # handed off meanwhile, or a person took it by hand
        name = self.bot_of(conv.routing.get("rules") or [])
        cfg = self.bots().get(name) if name is not None else None
        contact = await self.store.get_contact(conv.contact_id)
        attributes = dict(contact.attributes)
        language = preferred_language(attributes) or detect_language(text) or self.texts.default
        if name is None or cfg is None:
            await self.handoff(conv.id, Handoff("bot_unavailable", language=language))
            return
        if message.automated:  # never a conversation between two machines
            await self.handoff(conv.id, Handoff("automated", language=language), notify=False)
            return
        if self.wants_person(text, cfg):
            await self.handoff(conv.id, Handoff("keyword", language=language))
            return
        history = await self.store.messages(conv.id)
        turns = sum(1 for m in history if _bot_turn(m))
        if turns >= cfg.max_turns:
            await self.handoff(conv.id, Handoff("max_turns", language=language))
            return
        if self.http is None:
            await self.handoff(conv.id, Handoff("bot_unavailable", language=language))
            return
        payload = self._payload(name, cfg, conv, message, history, attributes, language, turns)
        try:
            reply = await call_bot(self.http, cfg, f"bot_{message.id}", payload)
        except BotFailure as failure:
            log.warning(
                "bot gave no usable answer; handing off",
                extra={"conversation": conv.id, "bot": name, "error": failure.detail},
            )
            METRICS.bot_turns.labels(name, failure.reason).inc()
            await self.handoff(conv.id, Handoff(failure.reason, language=language))
            return
        current = await self.store.get_conversation(conv.id)
        if current.queue != BOT_QUEUE or current.assignee or current.status == "closed":
            # A person (or an escalation step) took it during the call: the bot is late.
            log.info("bot answer dropped: a person has it", extra={"conversation": conv.id})
            return
        if isinstance(reply, Handoff):
            METRICS.bot_turns.labels(name, "handoff").inc()
            if reply.language is None:  # the language the gateway detected, for the rules
                reply = dataclasses.replace(reply, language=language)
            await self.handoff(conv.id, reply)
            return
        await self._say(conv, name, reply, turns + 1, message.id)

    async def _say(
        self, conv: Conversation, bot: str, reply: BotAnswer, turn: int, reply_to: str
    ) -> None:
        now = self.clock()
        sent = await self.services.reply(
            OutboundRequest(
                conv.id,
                reply.text,
                "bot",
                bot,
                now,
                automatic=True,
                metadata={
                    "bot": {
                        "name": bot,
                        "action": reply.action,
                        "turn": turn,
                        "reply_to": reply_to,
                    }
                },
            )
        )
        kind = "bot.answered" if reply.action == "answer" else "bot.asked"
        data = {"conversation_id": conv.id, "bot": bot, "message_id": sent.id, "turn": turn}
        self.services.committed(await self.store.bot_record(kind, data, now))
        METRICS.bot_turns.labels(bot, reply.action).inc()
        if reply.resolve:  # the bot is done; the customer writing again reopens it
            await self.services.resolve(conv.id, f"bot:{bot}")
            METRICS.self_service.labels("resolved_by_bot").inc()
        log.info(
            "bot answered", extra={"conversation": conv.id, "bot": bot, "action": reply.action}
        )

    def _payload(
        self,
        bot: str,
        cfg: WebhookBotConfig,
        conv: Conversation,
        message: Message,
        history: list[Message],
        attributes: dict[str, str],
        language: str,
        turns: int,
    ) -> dict[str, Any]:
        transcript = [
            {
                "from": m.sender_type,
                "text": m.text[:MAX_TRANSCRIPT_CHARS],
                "at": iso(m.created_at),
            }
            for m in history
            if m.direction == "in" or m.sender_type in ("bot", "agent")
        ][-cfg.transcript :]
        return {
            "type": "bot.message",
            "bot": bot,
            "conversation": {
                "id": conv.id,
                "channel": conv.last_channel,
                "channel_kind": conv.channel_kind,
                "subject": conv.subject,
                "turn": turns + 1,
                "max_turns": cfg.max_turns,
            },
            "contact": {"id": conv.contact_id, "language": language, "attributes": attributes},
            "message": {
                "id": message.id,
                "text": message.text,
                "subject": message.subject,
                "at": iso(message.created_at),
            },
            "transcript": transcript,
        }

    # --- the handoff -----------------------------------------------------------------------
    async def handoff(self, conversation_id: str, handoff: Handoff, notify: bool = True) -> None:
        """Give the conversation to a person by the rules with the handoff's facts; the
        customer is told (unless `notify` is False), the agent gets the summary."""
        conv = await self.store.get_conversation(conversation_id)
        if conv.queue != BOT_QUEUE:
            return
        bot = self.bot_of(conv.routing.get("rules") or []) or "unknown"
        if conv.status == "resolved":
            await self.services.reopen(conv.id, f"bot:{bot}")
        history = await self.store.messages(conv.id)
        first = next((m for m in history if m.direction == "in"), None)
        contact = await self.store.get_contact(conv.contact_id)
        attributes = dict(contact.attributes)
        facts = MessageFacts(
            conv.channel,
            conv.channel_kind,
            first.text if first else "",
            first.subject if first else conv.subject,
            attributes,
        )
        routing = self.routing()
        now = self.clock()
        cls = route_handoff(routing, facts, handoff)
        queue, reasons = cls.queue, list(cls.reasons)
        if routing.hours:  # a closed queue: park, or overflow to an open one
            placed = place(routing, queue, now)
            if placed.reason is not None:
                queue, reasons = placed.queue, [*reasons, placed.reason]
        facts_dict = handoff.to_dict()
        try:
            moved, events = await self.store.bot_handoff(
                BotHandoff(
                    conv.id,
                    bot,
                    queue,
                    PRIORITY_RANK[cls.priority],
                    cls.required_skills,
                    cls.tags,
                    {
                        "rule": cls.rule,
                        "rules": cls.rules,
                        "reasons": [*(conv.routing.get("reasons") or []), *reasons],
                        "reasons_localized": extend_localized(conv.routing, reasons),
                        "bot": bot,
                        "handoff": facts_dict,
                    },
                    facts_dict,
                    held_in=BOT_QUEUE,
                ),
                now,
            )
        except Conflict:  # an agent took it meanwhile (or it moved): theirs now, not ours
            log.info("bot handoff skipped", extra={"conversation": conv.id, "bot": bot})
            return
        self.services.committed(events)
        self.services.wake_routing()
        if handoff.reason in ("keyword", "max_turns", "automated", "restart", "bot_unavailable"):
            METRICS.bot_turns.labels(bot, handoff.reason).inc()
        log.info(
            "bot handed off to a person",
            extra={"conversation": conv.id, "bot": bot, "queue": queue, "why": handoff.reason},
        )
        language = (
            preferred_language(attributes)
            or primary(handoff.language)
            or (detect_language(first.text) if first else None)
            or self.texts.default
        )
        note = self.texts.text(
            "bot.note",
            self.texts.default,
            bot=bot,
            reason=handoff.reason,
            summary=handoff.summary or "—",
        )
        _, note_events = await workspace_store(self.store).note_add(
            moved.id, "bot", bot, note, [], now
        )
        self.services.committed(note_events)
        last_in = next((m for m in reversed(history) if m.direction == "in"), None)
        if (
            notify
            and self.closed_notice is not None
            and last_in is not None
            and await self.closed_notice(moved, last_in) is not None
        ):
            return  # the customer was told when a person will be there
        if notify:
            await self.services.reply(
                OutboundRequest(
                    moved.id,
                    self.texts.text("bot.handoff", language),
                    "bot",
                    bot,
                    self.clock(),
                    automatic=True,
                    metadata={"bot": {"name": bot, "action": "handoff"}},
                )
            )

    async def _after_restart(self, conversation_id: str, message_id: str, due: float) -> None:
        """Hand off once the call another instance may be making for the same message has
        had its time (the bot's timeout), unless the bot answered or handed off meanwhile."""
        await asyncio.sleep(max(0.0, due - self.clock()))

        async def work() -> None:
            conv = await self.store.get_conversation(conversation_id)
            if conv.queue != BOT_QUEUE or conv.status not in ACTIVE_STATUSES or conv.assignee:
                return
            history = await self.store.messages(conversation_id)
            if history and history[-1].id == message_id:
                await self.handoff(conversation_id, Handoff("restart"))

        try:
            await self._locked(conversation_id, work)
        except Exception:
            log.exception(
                "bot handoff after a restart failed", extra={"conversation": conversation_id}
            )

    async def recover(self) -> int:
        """At start: every conversation whose last message is the customer's (its bot call
        was cut off) is handed off, once the bot's timeout has passed since that message
        (with several instances, another one may be making the call). Returns how many."""
        found = 0
        cursor: str | None = None
        while True:
            rows, cursor = await self.store.list_conversations(
                ConversationFilter(status="open", queue=BOT_QUEUE, limit=200, cursor=cursor)
            )
            for conv in rows:
                if conv.status not in ACTIVE_STATUSES or conv.assignee:
                    continue
                history = await self.store.messages(conv.id)
                if history and history[-1].direction == "in":
                    name = self.bot_of(conv.routing.get("rules") or [])
                    cfg = self.bots().get(name) if name is not None else None
                    wait = (cfg.timeout if cfg is not None else 0.0) + RESTART_MARGIN
                    due = history[-1].created_at + wait
                    self._spawn(self._after_restart(conv.id, history[-1].id, due))
                    found += 1
            if cursor is None:
                break
        if found:
            log.info(
                "bot conversations cut off by a restart go to a person", extra={"count": found}
            )
        return found


class IdleSource:
    """A deadline source (gateway/time/deadlines.py): conversations the bot has whose
    customer stopped writing for the bot's `idle_after` are resolved; one whose last
    message the bot never answered goes to a person (reason `unanswered`). Due from the
    customer's last message, so whatever falls due is acted on and leaves the stage."""

    name = "bot_idle"
    wake_on = frozenset({"conversation.created", "message.received", "conversation.reopened"})

    def __init__(self, stage: WebhookBotStage) -> None:
        self.stage = stage

    async def _waiting(self) -> list[tuple[Conversation, WebhookBotConfig, float]]:
        out: list[tuple[Conversation, WebhookBotConfig, float]] = []
        cursor: str | None = None
        while True:
            rows, cursor = await self.stage.store.list_conversations(
                ConversationFilter(status="open", queue=BOT_QUEUE, limit=200, cursor=cursor)
            )
            for conv in rows:
                if conv.status not in ACTIVE_STATUSES or conv.assignee:
                    continue
                if self.stage.busy(conv.id):  # a turn is under way: not idle
                    continue
                name = self.stage.bot_of(conv.routing.get("rules") or [])
                cfg = self.stage.bots().get(name) if name is not None else None
                if cfg is None or cfg.idle_after is None:
                    continue
                since = conv.last_inbound_at or conv.created_at
                out.append((conv, cfg, since + cfg.idle_after))
            if cursor is None:
                return out

    async def next_due(self, now: float) -> float | None:
        dues = [due for _, _, due in await self._waiting()]
        return min(dues) if dues else None

    async def fire(self, now: float) -> None:
        for conv, _, due in await self._waiting():
            if due <= now:
                await self.stage._locked(conv.id, self._settle(conv.id, now))

    def _settle(self, conversation_id: str, now: float) -> Callable[[], Any]:
        async def work() -> None:
            stage = self.stage
            conv = await stage.store.get_conversation(conversation_id)
            if conv.queue != BOT_QUEUE or conv.status not in ACTIVE_STATUSES or conv.assignee:
                return
            history = await stage.store.messages(conv.id)
            if history and history[-1].direction == "in":
                await stage.handoff(conv.id, Handoff("unanswered"))
                return
            bot = stage.bot_of(conv.routing.get("rules") or []) or "unknown"
            await stage.services.resolve(conv.id, f"idle:{bot}")
            log.info(
                "bot conversation resolved: the customer went quiet",
                extra={"conversation": conv.id},
            )

        return work
