"""Surveys after resolution: when and to whom (the core); how they look is each
connector's business (`connectors.base.Prompt`).

A `DeadlineSource` (gateway/time/deadlines.py): `next_due` reads the earliest resolution with no
survey decision from the store; `fire` decides (gateway/surveys/policy.py) and records the
decision with a conditional insert, in the same transaction as the question it queues. So a
kill -9 loses nothing (the decision is not made yet: it is made after the restart) and
nothing is sent twice (the second decision finds the first).

Inbound, `intercept` runs before ingest: an answer to an open survey (a button, a callback,
a number typed as the reply, "stop") is recorded and goes no further — it neither opens a
conversation nor reopens one, nor is routed. Anything else is ingested as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connectors.base import InboundMessage, SubmitResult
from gateway.config_surveys import SurveysConfig
from gateway.i18n import Texts
from gateway.identity import normalize
from gateway.ids import new_id
from gateway.ingest import ChannelInfo
from gateway.linksecret import kept_secret
from gateway.services import Services
from gateway.store.base import (
    Conflict,
    NotFound,
    OutboundRequest,
    Store,
    SurveyFacts,
    SurveyResponse,
    SurveySend,
    SurveyStore,
)
from gateway.surveys import links
from gateway.surveys.policy import SCALES, decide, read_reply, read_score, unquoted

log = logging.getLogger("switchboard.surveys")

SECRET_NAMESPACE, SECRET_KEY = "surveys", "link_secret"
# Channel kinds whose customers answer by typing (the text says how).
EMAIL_KIND, WEBCHAT_KIND = "email", "webchat"
BATCH = 50


class Surveys:
    name = "surveys"
    wake_on = frozenset({"conversation.resolved"})

    def __init__(
        self,
        config: SurveysConfig,
        store: Store,
        services: Services,
        texts: Texts,
        clock: Callable[[], float],
        channel_kinds: dict[str, str],
        public_url: Callable[[], str],
    ) -> None:
        if not isinstance(store, SurveyStore):
            raise TypeError(f"{type(store).__name__} keeps no surveys")
        self.config = config
        self.store = store
        self.surveys: SurveyStore = store
        self.services = services
        self.texts = texts
        self.clock = clock
        self.channel_kinds = channel_kinds
        self.public_url = public_url
        self.secret = config.secret.get_secret_value().encode() if config.secret else b""
        self._decided_before: float | None = None

    async def start(self) -> None:
        """Without a configured secret, one made at first start and kept in the store (so
        links stay valid across restarts)."""
        if self.secret:
            return
        self.secret = await kept_secret(self.store, SECRET_NAMESPACE, SECRET_KEY)

    # --- the deadline source ---------------------------------------------------------------
    def _horizon(self, now: float) -> float:
        return now - self.config.delay - self.config.stale_after

    async def next_due(self, now: float) -> float | None:
        # Resolutions before `_decided_before` are all decided (a resolution is stamped
        # with the time it happens, so none appears behind it later; a minute of slack for
        # clocks): the read starts there, not at the horizon, and stays short.
        start = self._horizon(now)
        if self._decided_before is not None:
            start = max(start, self._decided_before - 60.0)
        due = await self.surveys.survey_next_due(self.config.delay, start, self.config.queues())
        self._decided_before = now if due is None else due - self.config.delay
        return due

    async def fire(self, now: float) -> None:
        cfg = self.config
        while True:
            due = await self.surveys.survey_due(
                now, cfg.delay, self._horizon(now), cfg.queues(), cfg.window, BATCH
            )
            for facts in due:
                await self._decide(facts, now)
            if len(due) < BATCH:
                return

    async def _decide(self, facts: SurveyFacts, now: float) -> None:
        conv = facts.conversation
        kind_of_channel = self.channel_kinds.get(conv.last_channel, conv.channel_kind)
        decision = decide(facts, self.config, kind_of_channel, now)
        send = None
        if decision.kind is not None:
            send = self._question(facts, decision.kind, kind_of_channel, decision.template, now)
        try:
            sent = await self.services.survey_decide(
                conv.id, conv.resolved_at or 0.0, decision.outcome, send
            )
        except Conflict as exc:  # no address to write to: decided, not sent
            log.info("no survey", extra={"conversation": conv.id, "reason": str(exc)})
            await self.services.survey_decide(conv.id, conv.resolved_at or 0.0, "no_address", None)
            return
        if sent is not None:
            log.info(
                "survey sent",
                extra={"survey": sent.id, "kind": sent.kind, "conversation": conv.id},
            )
        elif decision.kind is None:
            log.info("no survey", extra={"conversation": conv.id, "reason": decision.outcome})

    def _question(
        self, facts: SurveyFacts, kind: str, channel_kind: str, template: bool, now: float
    ) -> SurveySend:
        conv = facts.conversation
        lang = self.texts.language_for(facts.contact_attributes)
        low, high = SCALES[kind]
        response = SurveyResponse(
            id=new_id("sv"),
            conversation_id=conv.id,
            contact_id=conv.contact_id,
            channel=conv.last_channel,
            kind=kind,
            score=None,
            comment=None,
            agent_id=conv.assignee,
            queue=conv.queue,
            sent_at=now,
            answered_at=None,
            language=lang,
            resolved_at=conv.resolved_at or 0.0,
        )
        t = self.texts
        lines = [t.text(f"survey.{kind}.question", lang), t.text(f"survey.{kind}.scale", lang)]
        email = channel_kind == EMAIL_KIND
        base = self.public_url().rstrip("/")
        token = links.sign(self.secret, response.id)
        if email:
            lines.append(t.text("survey.click_hint", lang))
        else:
            lines.append(t.text("survey.reply_hint", lang, low=low, high=high))
            lines.append(t.text("survey.optout_hint", lang))
        text = "\n".join(lines)
        prompt: dict[str, Any] = {
            "id": response.id,
            "choices": [
                {
                    "value": str(n),
                    "label": str(n),
                    "url": f"{base}/surveys/{token}?score={n}" if email else None,
                }
                for n in range(low, high + 1)
            ],
            "comment": self.config.comment,
            "comment_url": f"{base}/surveys/{token}" if email else None,
            "optout_url": f"{base}/surveys/{token}/optout" if email else None,
            "texts": {
                key: t.text(f"survey.{key}", lang)
                for key in (
                    "comment_prompt",
                    "comment_submit",
                    "comment_thanks",
                    "thanks",
                    "optout_link",
                )
            },
        }
        tpl = self.config.whatsapp_template
        if template and tpl is not None:
            prompt["template"] = {
                "content_sid": tpl.content_sid,
                "variables": {
                    k: v.replace("{text}", text).replace("{conversation_id}", conv.id)
                    for k, v in tpl.variables.items()
                },
            }
        message = OutboundRequest(
            conv.id,
            text,
            "bot",
            None,
            now,
            automatic=True,
            metadata={"prompt": prompt, "survey": {"id": response.id, "kind": kind}},
        )
        return SurveySend(response, message)

    # --- answers ---------------------------------------------------------------------------
    async def intercept(self, channel: ChannelInfo, msg: InboundMessage) -> SubmitResult | None:
        """Record `msg` when it answers a survey (its result), else None: ingest it."""
        if msg.automated:
            return None
        now = self.clock()
        typed = channel.kind not in (EMAIL_KIND, WEBCHAT_KIND)
        cfg = self.config
        match = await self.surveys.survey_match(
            msg.sender,
            channel.name,
            msg.external_id,
            now - cfg.answer_window,
            now - cfg.comment_window if typed and cfg.comment and cfg.comment_window else None,
        )
        if match.answered_by is not None:  # a redelivered answer
            return SubmitResult(match.answered_by.conversation_id, None, duplicate=True)
        if msg.answer is not None:
            return await self._control_answer(channel, msg)
        open_ = match.open or match.awaiting_comment
        if open_ is None:
            return None
        reply = read_reply(msg.text, open_.kind)
        if reply is not None and reply.stop:
            await self.services.survey_optout(open_.contact_id, True, "reply")
            await self._tell(open_, "survey.optout_done")
            log.info("survey opt-out by reply", extra={"survey": open_.id})
            return SubmitResult(open_.conversation_id, None)
        if match.open is None:  # the comment the thank-you asked for
            comment = _comment(msg.text)
            if comment is None:
                return None
            response, changed = await self.services.survey_answer(
                open_.id, None, comment, channel.name, msg.external_id
            )
            if changed:
                await self._tell(response, "survey.comment_thanks")
            return SubmitResult(response.conversation_id, None)
        if reply is None:
            return None
        response, changed = await self.services.survey_answer(
            open_.id, reply.score, reply.comment, channel.name, msg.external_id
        )
        if changed:
            await self._thank(response, typed)
        return SubmitResult(response.conversation_id, None)

    async def _thank(self, response: SurveyResponse, typed: bool) -> None:
        """Thanks; where the customer types, an invitation to add a comment by replying."""
        invite = typed and self.config.comment and self.config.comment_window > 0
        if invite and response.comment is None:
            await self._tell(response, "survey.thanks_comment")
        else:
            await self._tell(response, "survey.thanks")

    async def _control_answer(self, channel: ChannelInfo, msg: InboundMessage) -> SubmitResult:
        """A button or callback: it must answer a survey sent to this very customer."""
        assert msg.answer is not None
        try:
            response = await self.surveys.survey_get(msg.answer.prompt_id)
            contact = await self.store.find_contact(normalize(msg.sender))
        except (NotFound, ValueError):
            log.info("survey answer for an unknown survey dropped", extra={"channel": channel.name})
            return SubmitResult(None, None)
        if contact.id != response.contact_id:
            owner = await self.store.get_contact(response.contact_id)
            if owner.merged_into != contact.id:
                log.warning(
                    "survey answer from another contact dropped", extra={"survey": response.id}
                )
                return SubmitResult(None, None)
        score = read_score(msg.answer.value, response.kind)
        comment = (msg.answer.comment or "").strip()[:4000] or None
        if score is None and comment is None:
            return SubmitResult(response.conversation_id, None)
        response, changed = await self.services.survey_answer(
            response.id,
            score,
            comment,
            channel.name,
            msg.external_id if score is not None else None,
        )
        if changed and score is not None and channel.kind not in (EMAIL_KIND, WEBCHAT_KIND):
            await self._thank(response, True)  # a button pressed (Telegram): say so in words
        return SubmitResult(response.conversation_id, None)

    async def _tell(self, response: SurveyResponse, key: str) -> None:
        """A short automatic answer in the survey's language (thanks, opt-out done)."""
        try:
            await self.services.reply(
                OutboundRequest(
                    response.conversation_id,
                    self.texts.text(key, response.language),
                    "bot",
                    None,
                    self.clock(),
                    automatic=True,
                )
            )
        except Exception:  # the answer is recorded; a missing thank-you is no failure
            log.exception("survey acknowledgement not queued", extra={"survey": response.id})

    async def is_open(self, prompt: dict[str, Any]) -> bool:
        """Whether the survey a stored prompt asks is still unanswered and answerable."""
        try:
            response = await self.surveys.survey_get(str(prompt.get("id")))
        except NotFound:
            return False
        return (
            response.answered_at is None
            and self.clock() < response.sent_at + self.config.answer_window
        )

    # --- links (email) ---------------------------------------------------------------------
    def response_id(self, token: str) -> str | None:
        return links.verify(self.secret, token) if self.secret else None


def _comment(text: str) -> str | None:
    """A follow-up message as the survey's comment (without a quoted part), or None."""
    kept = unquoted(text)[:4000].strip()
    return kept or None
