"""Classification: which queue, priority, skills and tags a message gets (pure).

Rules are compiled once per `RoutingConfig` (terms lower-cased, regexes compiled, lists
turned into sets) and the message's text is lower-cased at most once per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .config import PRIORITY_RANK, Action, Condition, RoutingConfig, TextMatch, as_list
from .reasons import CATALOG, Reason, join


@dataclass
class MessageFacts:
    """What the router may know about an inbound message."""

    channel: str
    channel_type: str
    text: str
    subject: str | None = None
    contact_attributes: dict[str, str] = field(default_factory=dict)
    # A bot's structured handoff (router/handoff.py); None for a message as it arrives.
    handoff: Handoff | None = None


if TYPE_CHECKING:
    from .handoff import Handoff


@dataclass
class RuleMatch:
    """One rule that held, why, and what it set (`queue`, `priority`, `skills`, `tags`)."""

    rule: str
    why: Reason
    set: dict[str, object]
    continued: bool


@dataclass
class Classification:
    """The outcome of `classify`, with the reasons for it. `rule` is the first rule that
    matched; `rules` every rule that took part (`continue: true` lets later ones add)."""

    queue: str
    priority: str
    required_skills: dict[str, int]
    tags: list[str]
    rule: str | None
    reasons: list[str]
    rules: list[str] = field(default_factory=list)
    matches: list[RuleMatch] = field(default_factory=list)


class _Prepared:
    """Facts with lower-cased views, each computed at most once."""

    def __init__(self, facts: MessageFacts) -> None:
        self.facts = facts

    @cached_property
    def channel(self) -> str:
        return self.facts.channel.lower()

    @cached_property
    def channel_type(self) -> str:
        return self.facts.channel_type.lower()

    @cached_property
    def text(self) -> str:
        return self.facts.text.lower()

    @cached_property
    def subject(self) -> str | None:
        return None if self.facts.subject is None else self.facts.subject.lower()

    @cached_property
    def contact(self) -> dict[str, str]:
        return {str(k).lower(): str(v).lower() for k, v in self.facts.contact_attributes.items()}


# A compiled condition returns why it holds, or None when it does not.
_Match = Callable[[_Prepared], Reason | None]


@dataclass(frozen=True)
class _Node:
    match: _Match
    description: Reason


def _quoted(values: list[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _one_of(label: str, values: list[str], get: Callable[[_Prepared], str]) -> _Node:
    wanted = frozenset(v.lower() for v in values)
    key = f"cond.{label}"

    def match(p: _Prepared) -> Reason | None:
        value = get(p)
        return Reason(key, value=repr(getattr(p.facts, label))) if value in wanted else None

    if len(values) == 1:
        return _Node(match, Reason(key, value=repr(values[0])))
    return _Node(match, Reason(f"{key}_in", values=_quoted(values)))


def _text(label: str, spec: TextMatch) -> _Node:
    terms = [t.lower() for t in as_list(spec.contains)] if spec.contains is not None else []
    pattern = spec.pattern
    key = f"cond.{label}"
    parts: list[Reason] = []
    if terms:
        if len(terms) == 1:
            parts.append(Reason("cond.contains", value=repr(terms[0])))
        else:
            parts.append(Reason("cond.contains_any", values=_quoted(terms)))
    if pattern is not None:
        parts.append(Reason("cond.regex", pattern=repr(pattern.pattern)))
    description = Reason(key, parts=join("and", parts))

    def match(p: _Prepared) -> Reason | None:
        why: list[Reason] = []
        if terms:
            lowered: str | None = p.text if label == "text" else p.subject
            if lowered is None:
                return None
            found = next((t for t in terms if t in lowered), None)
            if found is None:
                return None
            why.append(Reason("cond.contains", value=repr(found)))
        if pattern is not None:
            original = p.facts.text if label == "text" else p.facts.subject
            if original is None or pattern.search(original) is None:
                return None
            why.append(Reason("cond.regex", pattern=repr(pattern.pattern)))
        return Reason(key, parts=join("and", why))

    return _Node(match, description)


def _contact(attribute: str, value: object) -> _Node:
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    key = attribute.lower()
    wanted = frozenset(v.lower() for v in values)

    def match(p: _Prepared) -> Reason | None:
        have = p.contact.get(key)
        if have is None or have not in wanted:
            return None
        original = next(
            (str(v) for k, v in p.facts.contact_attributes.items() if str(k).lower() == key), have
        )
        return Reason("cond.contact", attribute=attribute, value=repr(original))

    if len(values) == 1:
        return _Node(match, Reason("cond.contact", attribute=attribute, value=repr(values[0])))
    return _Node(match, Reason("cond.contact_in", attribute=attribute, values=_quoted(values)))


def _handoff(key: str, value: object) -> _Node:
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    wanted = frozenset(v.lower() for v in values)
    name = "skill" if key == "skills" else key
    label: Reason | str = Reason(f"field.{name}") if f"field.{name}" in CATALOG else name

    def match(p: _Prepared) -> Reason | None:
        handoff = p.facts.handoff
        if handoff is None:
            return None
        found = next((v for v in handoff.values(key) if v in wanted), None)
        return None if found is None else Reason("cond.handoff", label=label, value=repr(found))

    if len(values) == 1:
        return _Node(match, Reason("cond.handoff", label=label, value=repr(values[0])))
    return _Node(match, Reason("cond.handoff_in", label=label, values=_quoted(values)))


def _all(nodes: list[_Node]) -> _Node:
    if len(nodes) == 1:
        return nodes[0]

    def match(p: _Prepared) -> Reason | None:
        why: list[Reason] = []
        for node in nodes:
            reason = node.match(p)
            if reason is None:
                return None
            why.append(reason)
        return join("and", why)

    return _Node(match, Reason("cond.group", condition=join("and", [n.description for n in nodes])))


def _any(nodes: list[_Node]) -> _Node:
    if len(nodes) == 1:
        return nodes[0]

    def match(p: _Prepared) -> Reason | None:
        for node in nodes:
            reason = node.match(p)
            if reason is not None:
                return reason
        return None

    return _Node(match, Reason("cond.group", condition=join("or", [n.description for n in nodes])))


def _not(node: _Node) -> _Node:
    description = Reason("cond.not", condition=node.description)

    def match(p: _Prepared) -> Reason | None:
        return description if node.match(p) is None else None

    return _Node(match, description)


def compile_condition(cond: Condition) -> _Node:
    """Compile a condition; the keys of one mapping must all hold."""
    nodes: list[_Node] = []
    if cond.channel is not None:
        nodes.append(_one_of("channel", as_list(cond.channel), lambda p: p.channel))
    if cond.channel_type is not None:
        nodes.append(_one_of("channel_type", as_list(cond.channel_type), lambda p: p.channel_type))
    if cond.text is not None:
        nodes.append(_text("text", cond.text))
    if cond.subject is not None:
        nodes.append(_text("subject", cond.subject))
    if cond.contact is not None:
        nodes.extend(_contact(k, v) for k, v in cond.contact.items())
    if cond.handoff is not None:
        nodes.extend(_handoff(k, v) for k, v in cond.handoff.items())
    if cond.all_ is not None:
        nodes.append(_all([compile_condition(c) for c in cond.all_]))
    if cond.any_ is not None:
        nodes.append(_any([compile_condition(c) for c in cond.any_]))
    if cond.not_ is not None:
        nodes.append(_not(compile_condition(cond.not_)))
    return _all(nodes)


@dataclass(frozen=True)
class _CompiledRule:
    name: str
    node: _Node
    then: Action
    continue_: bool


def _sets_text(sets: dict[str, object]) -> Reason:
    parts = []
    for key, value in sets.items():
        text: Reason | str
        if isinstance(value, dict):
            text = ", ".join(f"{k}>={v}" for k, v in value.items()) or Reason("word.none")
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) or Reason("word.none")
        else:
            text = str(value)
        parts.append(Reason("rule.sets", field=Reason(f"field.{key}"), value=text))
    return join("semicolon", parts) if parts else Reason("word.nothing")


def _compiled(config: RoutingConfig) -> list[_CompiledRule]:
    cached: list[_CompiledRule] | None = config._compiled
    if cached is None:
        cached = [
            _CompiledRule(r.name, compile_condition(r.when), r.then, r.continue_)
            for r in config.rules
        ]
        config._compiled = cached
    return cached


def explain_condition(cond: Condition, facts: MessageFacts) -> Reason | None:
    """Why `cond` holds for `facts`, or None when it does not."""
    return compile_condition(cond).match(_Prepared(facts))


def _what_it_sets(then: Action) -> dict[str, object]:
    out: dict[str, object] = {}
    if then.queue is not None:
        out["queue"] = then.queue
    if then.priority is not None:
        out["priority"] = then.priority
    if "skills" in then.model_fields_set:
        out["skills"] = dict(then.skills)
    if "tags" in then.model_fields_set:
        out["tags"] = list(then.tags)
    return out


def classify(config: RoutingConfig, facts: MessageFacts) -> Classification:
    """Apply the rules top to bottom, else the default action. The first rule that holds
    decides, unless it has `continue: true`: then the next rules that hold add to it —
    tags and skills are added (a skill keeps its higher level), the priority is only
    raised, the first queue given stays — until one without `continue` has matched."""
    prepared = _Prepared(facts)
    default = config.default
    matches: list[RuleMatch] = []
    queue: str | None = None
    priority: str | None = None
    skills: dict[str, int] | None = None
    tags: list[str] | None = None
    reasons: list[str] = []
    for rule in _compiled(config):
        why = rule.node.match(prepared)
        if why is None:
            continue
        then = rule.then
        sets = _what_it_sets(then)
        matches.append(RuleMatch(rule.name, why, sets, rule.continue_))
        reasons.append(
            Reason("rule.matched_sets", rule=repr(rule.name), why=why, sets=_sets_text(sets))
            if len(matches) > 1 or rule.continue_
            else Reason("rule.matched", rule=repr(rule.name), why=why)
        )
        if then.queue is not None:
            if queue is None:
                queue = then.queue
            elif then.queue != queue:
                reasons.append(
                    Reason(
                        "rule.queue_ignored",
                        queue=repr(then.queue),
                        rule=repr(rule.name),
                        first=repr(queue),
                    )
                )
        if then.priority is not None and (
            priority is None or PRIORITY_RANK[then.priority] > PRIORITY_RANK[priority]
        ):
            priority = then.priority
        if "skills" in then.model_fields_set:
            merged = dict(skills or {})
            for name, level in then.skills.items():
                merged[name] = max(level, merged.get(name, 0))
            skills = merged
        if "tags" in then.model_fields_set:
            tags = [*(tags or []), *(t for t in then.tags if t not in (tags or []))]
        if not rule.continue_:
            break
    if matches:
        if queue is None:
            queue = default.queue
            reasons.append(Reason("rule.default_queue", queue=repr(queue)))
        if priority is None:
            priority = default.priority
            reasons.append(Reason("rule.default_priority", priority=repr(priority)))
        return Classification(
            queue,
            priority,
            dict(default.skills if skills is None else skills),
            list(default.tags if tags is None else tags),
            matches[0].rule,
            reasons,
            [m.rule for m in matches],
            matches,
        )
    return Classification(
        default.queue,
        default.priority,
        dict(default.skills),
        list(default.tags),
        None,
        [Reason("rule.none", queue=repr(default.queue))],
    )
