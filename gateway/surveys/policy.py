"""Who is asked what, and when: pure functions of the facts and the clock (no I/O).

A resolution that fell due gets at most one question. None at all to a contact who opted
out, whose last message came from a machine, whose last reply bounced, who got many
automatic messages lately (the loop guard), or who was asked `max_per_contact` times within
`window`. Of the kinds the conversation's queue opted into: NPS when the contact was not
asked within `nps.interval`, else CES, else CSAT. On WhatsApp outside the 24-hour window
only through the configured template, or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config_surveys import SurveysConfig
from gateway.store.base import SurveyFacts

SCALES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
WHATSAPP_KIND = "twilio_whatsapp"
WHATSAPP_WINDOW = 24 * 3600.0
# Replies that mean "no more surveys" (compared case-folded, without punctuation).
STOP_WORDS = frozenset(
    {"stop", "stopp", "unsubscribe", "abmelden", "no more surveys", "keine umfragen", "optout"}
)


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str | None
    # "sent", or why not.
    outcome: str
    # Send through the provider template (WhatsApp outside the 24-hour window).
    template: bool = False


def choose_kind(
    cfg: SurveysConfig, queue: str, last_sent: dict[str, float], now: float
) -> str | None:
    if cfg.nps.covers(queue) and now - last_sent.get("nps", float("-inf")) >= cfg.nps.interval:
        return "nps"
    if cfg.ces.covers(queue):
        return "ces"
    if cfg.csat.covers(queue):
        return "csat"
    return None


def decide(facts: SurveyFacts, cfg: SurveysConfig, channel_kind: str, now: float) -> Decision:
    conv = facts.conversation
    if cfg.channels is not None and conv.last_channel not in cfg.channels:
        return Decision(None, "channel_not_enabled")
    if facts.opted_out:
        return Decision(None, "opted_out")
    if facts.automated:
        return Decision(None, "automated")
    if facts.bounced:
        return Decision(None, "bounced")
    if facts.recent_automatic >= cfg.max_automatic:
        return Decision(None, "loop_guard")
    if facts.recent_surveys >= cfg.max_per_contact:
        return Decision(None, "contact_cap")
    kind = choose_kind(cfg, conv.queue, facts.last_sent, now)
    if kind is None:
        return Decision(None, "not_due")
    template = False
    if channel_kind == WHATSAPP_KIND and (
        conv.last_inbound_at is None or now - conv.last_inbound_at >= WHATSAPP_WINDOW
    ):
        if cfg.whatsapp_template is None:
            return Decision(None, "whatsapp_window_closed")
        template = True
    return Decision(kind, "sent", template)


@dataclass(frozen=True, slots=True)
class Reply:
    """A customer's text read as an answer: a score (and a comment), or a stop."""

    score: int | None = None
    comment: str | None = None
    stop: bool = False


_SCORE = re.compile(r"^\s*(\d{1,2})(?!\d)\s*(?:[-\u2013\u2014:,.;!)]+\s*)?(.*)$", re.DOTALL)


_QUOTE_HEADER = re.compile(r"^(on|am) .*\b(wrote|schrieb)\b.*:\s*$", re.I)


def unquoted(text: str) -> str:
    """The reply without the quoted question under it (an email client's "> ...")."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(">") or _QUOTE_HEADER.match(line.strip()):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def read_reply(text: str, kind: str) -> Reply | None:
    """The text as an answer to a `kind` question, or None when it is something else (a
    new question for the team, which then reopens the conversation as usual)."""
    text = unquoted(text)
    words = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    if words in STOP_WORDS:
        return Reply(stop=True)
    match = _SCORE.match(text)
    if match is None:
        return None
    score = int(match.group(1))
    low, high = SCALES[kind]
    if not low <= score <= high:
        return None
    comment = match.group(2).strip() or None
    return Reply(score=score, comment=comment)


def read_score(value: str | None, kind: str) -> int | None:
    """A button's or link's value as a score of `kind`, or None when out of range."""
    if value is None or not value.strip().isdigit():
        return None
    score = int(value)
    low, high = SCALES[kind]
    return score if low <= score <= high else None
