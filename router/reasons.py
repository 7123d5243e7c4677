"""Routing reasons as message keys with parameters, rendered in English and German (pure).

A `Reason` is a `str` (its English text, byte-identical to the reasons the router always
gave), so every `reasons: list[str]` keeps working; it also carries its `key` and
`params`, so `render(reason, "de")` can say the same in German. Parameters that are data
(rule, queue and agent names, quoted values) are inserted as they are; a parameter that is
itself a `Reason` (a condition inside a rule's `why`, a word like "none") is rendered in the
same language. The `join.*` keys join their `items` with a language's separator.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

LANGUAGES = ("en", "de")

Param = Union[str, int, "Reason", tuple["Reason | str", ...]]

# key → language → template (str.format with named fields).
CATALOG: dict[str, dict[str, str]] = {
    # separators: `items` joined
    "join.and": {"en": " and ", "de": " und "},
    "join.or": {"en": " or ", "de": " oder "},
    "join.comma": {"en": ", ", "de": ", "},
    "join.semicolon": {"en": "; ", "de": "; "},
    "word.none": {"en": "none", "de": "keine"},
    "word.nothing": {"en": "nothing", "de": "nichts"},
    # what a rule sets (`sets ...`)
    "field.queue": {"en": "queue", "de": "Warteschlange"},
    "field.priority": {"en": "priority", "de": "Priorität"},
    "field.skills": {"en": "skills", "de": "Skills"},
    "field.tags": {"en": "tags", "de": "Tags"},
    # handoff condition labels
    "field.reason": {"en": "reason", "de": "Grund"},
    "field.language": {"en": "language", "de": "Sprache"},
    "field.skill": {"en": "skill", "de": "Skill"},
    # conditions (router/rules.py): why one holds, or what it says
    "cond.channel": {"en": "channel is {value}", "de": "Kanal ist {value}"},
    "cond.channel_in": {"en": "channel in [{values}]", "de": "Kanal in [{values}]"},
    "cond.channel_type": {"en": "channel_type is {value}", "de": "Kanaltyp ist {value}"},
    "cond.channel_type_in": {
        "en": "channel_type in [{values}]",
        "de": "Kanaltyp in [{values}]",
    },
    "cond.text": {"en": "text {parts}", "de": "Text {parts}"},
    "cond.subject": {"en": "subject {parts}", "de": "Betreff {parts}"},
    "cond.contains": {"en": "contains {value}", "de": "enthält {value}"},
    "cond.contains_any": {"en": "contains any of {values}", "de": "enthält eines von {values}"},
    "cond.regex": {"en": "matches regex {pattern}", "de": "passt auf Regex {pattern}"},
    "cond.contact": {
        "en": "contact {attribute} is {value}",
        "de": "Kontaktattribut {attribute} ist {value}",
    },
    "cond.contact_in": {
        "en": "contact {attribute} in [{values}]",
        "de": "Kontaktattribut {attribute} in [{values}]",
    },
    "cond.handoff": {"en": "handoff {label} is {value}", "de": "Übergabe: {label} ist {value}"},
    "cond.handoff_in": {
        "en": "handoff {label} in [{values}]",
        "de": "Übergabe: {label} in [{values}]",
    },
    "cond.group": {"en": "({condition})", "de": "({condition})"},
    "cond.not": {"en": "not ({condition})", "de": "nicht ({condition})"},
    # classification (router/rules.py)
    "rule.matched": {"en": "rule {rule} matched: {why}", "de": "Regel {rule} trifft zu: {why}"},
    "rule.matched_sets": {
        "en": "rule {rule} matched: {why}; sets {sets}",
        "de": "Regel {rule} trifft zu: {why}; setzt {sets}",
    },
    "rule.sets": {"en": "{field} {value}", "de": "{field} {value}"},
    "rule.queue_ignored": {
        "en": "queue {queue} of rule {rule} ignored: {first} was set first",
        "de": "Warteschlange {queue} der Regel {rule} ignoriert: {first} wurde zuerst gesetzt",
    },
    "rule.default_queue": {
        "en": "queue {queue} from default",
        "de": "Warteschlange {queue} aus der Voreinstellung",
    },
    "rule.default_priority": {
        "en": "priority {priority} from default",
        "de": "Priorität {priority} aus der Voreinstellung",
    },
    "rule.none": {
        "en": "no rule matched; default queue {queue}",
        "de": "keine Regel trifft zu; Standard-Warteschlange {queue}",
    },
    # agent selection (router/strategies.py, router/planner.py)
    "agent.excluded": {"en": "{agent}: {problems}", "de": "{agent}: {problems}"},
    "agent.not_in_queue": {"en": "not in queue {queue}", "de": "nicht in Warteschlange {queue}"},
    "agent.away": {"en": "away", "de": "abwesend"},
    "agent.offline": {"en": "offline", "de": "offline"},
    "agent.at_capacity": {
        "en": "at capacity {load}/{capacity}",
        "de": "ausgelastet {load}/{capacity}",
    },
    "agent.lacks_skill": {
        "en": "lacks skill {skill}>={level}",
        "de": "Skill {skill}>={level} fehlt",
    },
    "agent.lacks_skill_has": {
        "en": "lacks skill {skill}>={level} (has {have})",
        "de": "Skill {skill}>={level} fehlt (hat {have})",
    },
    "agent.declined": {
        "en": "declined or lost it lately",
        "de": "kürzlich abgelehnt oder verloren",
    },
    "queue.no_agent": {
        "en": "no eligible agent in queue {queue}; conversation waits",
        "de": "kein passender Agent in Warteschlange {queue}; die Konversation wartet",
    },
    "queue.unknown": {
        "en": "unknown queue {queue}; conversation waits",
        "de": "unbekannte Warteschlange {queue}; die Konversation wartet",
    },
    "agent.sticky": {
        "en": "{agent} chosen by sticky routing: answered this customer last; "
        "load {load}/{capacity}",
        "de": "{agent} gewählt nach Sticky-Routing: hat diesem Kunden zuletzt geantwortet; "
        "Auslastung {load}/{capacity}",
    },
    "agent.chosen": {
        "en": "{agent} chosen by {strategy}; load {load}/{capacity}",
        "de": "{agent} gewählt nach {strategy}; Auslastung {load}/{capacity}",
    },
    "agent.chosen_after": {
        "en": "{agent} chosen by {strategy}; load {load}/{capacity}; previous {previous}",
        "de": "{agent} gewählt nach {strategy}; Auslastung {load}/{capacity}; zuvor {previous}",
    },
    "agent.chosen_idle": {
        "en": "{agent} chosen by {strategy}; load {load}/{capacity}; {idle}",
        "de": "{agent} gewählt nach {strategy}; Auslastung {load}/{capacity}; {idle}",
    },
    "agent.chosen_skills": {
        "en": "{agent} chosen by {strategy}; skill score {score}; load {load}/{capacity}",
        "de": "{agent} gewählt nach {strategy}; Skill-Wert {score}; Auslastung {load}/{capacity}",
    },
    "detail.never_assigned": {"en": "never assigned", "de": "nie zugewiesen"},
    "detail.last_assigned": {
        "en": "last assigned {seconds}s ago",
        "de": "zuletzt vor {seconds}s zugewiesen",
    },
    "pool.excluded": {
        "en": "{total} of {members} agents of the queue excluded: {parts}",
        "de": "{total} von {members} Agenten der Warteschlange ausgeschlossen: {parts}",
    },
    "pool.unavailable": {"en": "{count} offline or away", "de": "{count} offline oder abwesend"},
    "pool.full": {"en": "{count} at capacity", "de": "{count} ausgelastet"},
    "pool.lacking": {"en": "{count} lacking skills", "de": "{count} ohne die Skills"},
    # escalation steps (router/policies.py): what a step changed
    "escalation.no_skills": {
        "en": "requires no skill any more (was {was})",
        "de": "erfordert keinen Skill mehr (vorher {was})",
    },
    "escalation.skill_dropped": {
        "en": "no longer requires {skill}",
        "de": "erfordert {skill} nicht mehr",
    },
    "escalation.skill_lowered": {
        "en": "requires {skill}>={level} (was {was})",
        "de": "erfordert {skill}>={level} (vorher {was})",
    },
    "escalation.queue": {
        "en": "moved to queue {queue} (was {was})",
        "de": "in Warteschlange {queue} verschoben (vorher {was})",
    },
    "escalation.priority": {
        "en": "priority {priority} (was {was})",
        "de": "Priorität {priority} (vorher {was})",
    },
    "escalation.nothing": {
        "en": "step {step}: nothing left to widen",
        "de": "Stufe {step}: nichts mehr zu lockern",
    },
    # business hours (router/schedule.py)
    "hours.overflow": {
        "en": "queue {queue} is closed: overflow to {other}, which is open",
        "de": "Warteschlange {queue} ist geschlossen: Überlauf nach {other}, die geöffnet ist",
    },
    "hours.waits": {
        "en": "queue {queue} is closed: the conversation waits for the opening",
        "de": "Warteschlange {queue} ist geschlossen: die Konversation wartet auf die Öffnung",
    },
    # a bot's handoff (router/handoff.py)
    "handoff.by_bot": {"en": "bot handed off: {parts}", "de": "Bot hat übergeben: {parts}"},
    "handoff.reason": {"en": "reason {value}", "de": "Grund {value}"},
    "handoff.language": {"en": "language {value}", "de": "Sprache {value}"},
    "handoff.skills": {"en": "skills {values}", "de": "Skills {values}"},
    "handoff.priority": {"en": "priority {value}", "de": "Priorität {value}"},
    "handoff.raised_priority": {
        "en": "priority {priority} from the handoff",
        "de": "Priorität {priority} aus der Übergabe",
    },
    # added by the core (gateway/)
    "core.invited": {"en": "invited by rule {rule}", "de": "eingeladen durch Regel {rule}"},
    "core.outreach_queue": {
        "en": "queue {queue} chosen by {by}",
        "de": "Warteschlange {queue} gewählt von {by}",
    },
    "core.outreach_started": {
        "en": "started by {by} (proactive outreach)",
        "de": "gestartet von {by} (proaktive Kontaktaufnahme)",
    },
    "core.bot_holds": {"en": "bot {bot} answers first", "de": "Bot {bot} antwortet zuerst"},
    "core.kb_holds": {
        "en": "bot: knowledge_base answers first",
        "de": "Bot: knowledge_base antwortet zuerst",
    },
    "core.manual": {"en": "assigned manually by {by}", "de": "manuell zugewiesen von {by}"},
    "core.offered": {
        "en": "offered; waits for the answer",
        "de": "angeboten; wartet auf die Antwort",
    },
    "core.offer_accepted": {
        "en": "offer accepted by {agent}",
        "de": "Angebot angenommen von {agent}",
    },
}


_ENGLISH = {key: templates["en"] for key, templates in CATALOG.items()}


def fields(template: str) -> set[str]:
    """The named parameters a template takes."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Reason(str):
    """A routing reason: its English text, with the `key` and `params` to render it in
    another language."""

    __slots__ = ("key", "params")
    key: str
    params: Mapping[str, Param]

    def __new__(cls, key: str, **params: Param) -> Reason:
        # The English text straight from the template: a nested Reason is a str whose value
        # is its English text already (this is on the router's hot path, keep it cheap).
        template = _ENGLISH[key]
        items = params.get("items")
        text = template.join(items) if isinstance(items, tuple) else template.format_map(params)
        self = str.__new__(cls, text)
        self.key = key
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.key, dict(self.params)))


def _rebuild(key: str, params: dict[str, Param]) -> Reason:
    return Reason(key, **params)


def join(sep: str, items: Iterable[Reason | str]) -> Reason:
    """`items` joined by the separator `sep` (`and`, `or`, `comma`, `semicolon`)."""
    return Reason(f"join.{sep}", items=tuple(items))


def _value(value: Param, lang: str) -> str:
    if isinstance(value, Reason):
        return render(value, lang)
    if isinstance(value, tuple):
        raise TypeError("a tuple parameter belongs to a join.* reason")
    return str(value)


def _render(key: str, params: Mapping[str, Param], lang: str) -> str:
    template = CATALOG[key].get(lang) or CATALOG[key]["en"]
    if key.startswith("join."):
        items = params["items"]
        assert isinstance(items, tuple)
        return template.join(_value(i, lang) for i in items)
    return template.format(**{k: _value(v, lang) for k, v in params.items()})


def render(reason: str, lang: str) -> str:
    """`reason` in `lang`; a plain string (not a `Reason`) stays as it is."""
    if not isinstance(reason, Reason) or lang == "en":
        return str(reason)
    return _render(reason.key, reason.params, lang)


def localize(reasons: Sequence[str]) -> dict[str, list[str]]:
    """`reasons` rendered in every language: `{"en": [...], "de": [...]}`."""
    return {lang: [render(r, lang) for r in reasons] for lang in LANGUAGES}


def localized_of(routing: Mapping[str, Any]) -> dict[str, list[str]]:
    """The per-language reasons of stored routing metadata; metadata written before there
    were any (only English `reasons`) serves `{"en": reasons}`."""
    stored = routing.get("reasons_localized")
    if isinstance(stored, dict) and stored:
        return {str(k): list(v) for k, v in stored.items()}
    return {"en": list(routing.get("reasons") or [])}


def extend_localized(routing: Mapping[str, Any], more: Sequence[str]) -> dict[str, list[str]]:
    """The stored reasons of `routing` followed by `more`, per language; a language the
    stored ones lack takes their English text."""
    before = localized_of(routing)
    english = before.get("en", [])
    return {
        lang: [*before.get(lang, english), *(render(r, lang) for r in more)] for lang in LANGUAGES
    }
