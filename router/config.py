"""Pydantic models for the `routing:` block of the configuration.

Every model forbids unknown keys. Cross-references (queue names used by `default` and
`rules`) are checked on `RoutingConfig`, and each problem is reported at its own key path,
e.g. `rules.1.then.queue`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .hours import HoursConfig, OutOfHours
from .policies import PRIORITY_RANK as _RANK
from .policies import (
    Duration,
    Escalation,
    NoReplyPolicy,
    OfferPolicy,
    OfflinePolicy,
    StickyPolicy,
)
from .policies import Priority as Priority
from .sla import SlaConfig

PRIORITY_RANK: dict[str, int] = _RANK

Strategy = Literal["round_robin", "least_busy", "longest_idle", "skills"]

SkillLevel = Annotated[int, Field(ge=1, le=10)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
# One name or a non-empty list of names.
NameOrNames = NonEmptyStr | Annotated[list[NonEmptyStr], Field(min_length=1)]
ContactScalar = str | int | float | bool
ContactValue = ContactScalar | Annotated[list[ContactScalar], Field(min_length=1)]
# What a bot's structured handoff tells the rules (router/handoff.py).
HandoffKey = Literal["reason", "language", "priority", "skills"]


class _Strict(BaseModel):
    # Frozen: a validated config is a value; rules.py caches its compiled form on it.
    model_config = ConfigDict(extra="forbid", frozen=True)


def as_list(value: str | list[str]) -> list[str]:
    """Normalise a `str | list[str]` config value to a list."""
    return [value] if isinstance(value, str) else list(value)


class QueueConfig(_Strict):
    """A queue agents serve, and how it picks an agent."""

    name: NonEmptyStr
    strategy: Strategy = "round_robin"
    # --- business hours (router/hours.py, router/schedule.py) ---
    hours: NonEmptyStr | None = Field(
        None, description="A calendar of routing.hours (default: routing.default_hours)."
    )
    out_of_hours: OutOfHours = Field(default_factory=OutOfHours)  # type: ignore[arg-type]
    offers: OfferPolicy | None = Field(
        None, description="Offer live-channel conversations to one agent at a time."
    )
    no_reply: NoReplyPolicy | None = Field(
        None, description="Requeue when the assignee does not answer (else routing.no_reply)."
    )


class TextMatch(_Strict):
    """Match on message text or subject: `contains` (case-insensitive, any of) and/or `regex`.

    When both are given, both must hold. The regex is searched in the original text, so
    use `(?i)` for case-insensitivity.
    """

    contains: NameOrNames | None = None
    regex: str | None = None
    _pattern: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> TextMatch:
        if self.contains is None and self.regex is None:
            raise ValueError("give 'contains' and/or 'regex'")
        if self.regex is not None:
            self._pattern = re.compile(self.regex)
        return self

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled `regex`, or None."""
        return self._pattern


class Condition(_Strict):
    """A condition on a message; several keys in one mapping must all hold."""

    channel: NameOrNames | None = None
    channel_type: NameOrNames | None = None
    text: TextMatch | None = None
    subject: TextMatch | None = None
    contact: Annotated[dict[str, ContactValue], Field(min_length=1)] | None = None
    all_: Annotated[list[Condition], Field(min_length=1)] | None = Field(None, alias="all")
    any_: Annotated[list[Condition], Field(min_length=1)] | None = Field(None, alias="any")
    not_: Condition | None = Field(None, alias="not")
    handoff: Annotated[dict[HandoffKey, ContactValue], Field(min_length=1)] | None = Field(
        None,
        description="Issue 15: what a bot's handoff says (router/handoff.py): `reason`, "
        "`language`, `priority` (one value or a list, case-insensitive) and `skills` (any "
        "of them). Holds only when a bot hands a conversation off: put such rules above "
        "the rule with the `bot`.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            keys = ", ".join(field.alias or name for name, field in type(self).model_fields.items())
            raise ValueError(f"empty condition: give at least one of {keys}")
        return self


class Action(_Strict):
    """What to do with a matching conversation.

    In a rule, `queue`/`priority` left None and `skills`/`tags` not given fall back to
    the routing `default`.
    """

    queue: NonEmptyStr | None = None
    priority: Priority | None = None
    skills: dict[NonEmptyStr, SkillLevel] = Field(default_factory=dict)
    tags: list[NonEmptyStr] = Field(default_factory=list)


class DefaultAction(Action):
    """The action when no rule matches: a queue is required, priority defaults to normal."""

    queue: NonEmptyStr
    priority: Priority = "normal"


class WebhookBotRef(_Strict):
    """`bot: {webhook: NAME}`: the external bot NAME of the top-level `bots:` map."""

    webhook: NonEmptyStr


class Rule(_Strict):
    """A named rule: the first rule whose `when` holds decides (`then`), unless it says
    `continue: true`: then later rules that hold add to its actions (tags and skills are
    added, priority only raised, the first queue given stays)."""

    name: NonEmptyStr
    when: Condition
    then: Action
    continue_: bool = Field(False, alias="continue")
    escalation: Escalation | None = None
    bot: Literal["knowledge_base"] | WebhookBotRef | None = Field(
        None,
        description="Issue 15: `knowledge_base` answers a new conversation this rule takes "
        "with the best public article (above `knowledge_base.bot_min_score`, in the "
        "contact's language) and resolves it; the customer's next message reopens it for a "
        "person in this rule's queue. `{webhook: NAME}` hands the conversation to the "
        "external bot NAME of `bots:` until it hands off (gateway/bots/).",
    )


def _error(
    kind: str, template: str, ctx: dict[str, Any], loc: tuple[str | int, ...]
) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(kind, template, ctx), loc=loc, input=ctx.get("input")
    )


class RoutingConfig(_Strict):
    """The `routing:` block: queues, ordered rules and the default action."""

    queues: Annotated[list[QueueConfig], Field(min_length=1)]
    default: DefaultAction
    rules: list[Rule] = Field(default_factory=list)
    # --- business hours, SLA (router/hours.py, router/sla.py, router/schedule.py) ---
    hours: dict[NonEmptyStr, HoursConfig] = Field(
        default_factory=dict, description="Named business-hours calendars."
    )
    default_hours: NonEmptyStr | None = Field(
        None, description="The calendar of queues that name none (none: always open)."
    )
    sla: SlaConfig | None = None
    order: Literal["priority", "sla"] = Field(
        "priority",
        description="Waiting conversations: highest priority, then oldest (`priority`), or "
        "highest priority, then nearest SLA breach, then oldest (`sla`).",
    )
    escalation: Escalation | None = Field(
        None, description="For conversations none of whose matching rules has escalation."
    )
    no_reply: NoReplyPolicy | None = Field(
        None, description="The default for queues without their own `no_reply`."
    )
    sticky: StickyPolicy | None = None
    offline: OfflinePolicy = Field(default_factory=OfflinePolicy)  # type: ignore[arg-type]
    skip_declined_for: Duration = Field(
        900.0,
        description="An agent who rejected an offer or let it time out, or lost the "
        "conversation for not replying or going offline, is not picked for it again for "
        "this long.",
    )
    # Compiled rules, filled lazily by router.rules.classify.
    _compiled: Any = PrivateAttr(default=None)
    # Compiled calendars per queue, filled lazily by router.schedule.
    _calendars: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_references(self) -> RoutingConfig:
        errors: list[InitErrorDetails] = []
        names: set[str] = set()
        for i, queue in enumerate(self.queues):
            if queue.name in names:
                errors.append(
                    _error(
                        "duplicate_queue",
                        "duplicate queue name '{input}'",
                        {"input": queue.name},
                        ("queues", i, "name"),
                    )
                )
            names.add(queue.name)
        known = ", ".join(sorted(names))

        def check_queue(queue: str | None, loc: tuple[str | int, ...]) -> None:
            if queue is not None and queue not in names:
                errors.append(
                    _error(
                        "unknown_queue",
                        "unknown queue '{input}' (defined queues: {known})",
                        {"input": queue, "known": known},
                        loc,
                    )
                )

        check_queue(self.default.queue, ("default", "queue"))
        rule_names: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in rule_names:
                errors.append(
                    _error(
                        "duplicate_rule",
                        "duplicate rule name '{input}'",
                        {"input": rule.name},
                        ("rules", i, "name"),
                    )
                )
            rule_names.add(rule.name)
            check_queue(rule.then.queue, ("rules", i, "then", "queue"))
            for j, step in enumerate(rule.escalation.steps if rule.escalation else []):
                check_queue(step.queue, ("rules", i, "escalation", "steps", j, "queue"))
        # --- business hours, SLA ---
        calendars = ", ".join(sorted(self.hours)) or "none defined"

        def check_hours(name: str | None, loc: tuple[str | int, ...]) -> None:
            if name is not None and name not in self.hours:
                errors.append(
                    _error(
                        "unknown_hours",
                        "unknown hours '{input}' (routing.hours: {known})",
                        {"input": name, "known": calendars},
                        loc,
                    )
                )

        check_hours(self.default_hours, ("default_hours",))
        for i, queue in enumerate(self.queues):
            check_hours(queue.hours, ("queues", i, "hours"))
            check_queue(queue.out_of_hours.overflow, ("queues", i, "out_of_hours", "overflow"))
        if self.sla is not None:
            for i, policy in enumerate(self.sla.policies):
                for j, name in enumerate(policy.when.queue or []):
                    check_queue(name, ("sla", "policies", i, "when", "queue", j))
                check_queue(
                    policy.on_breach.move_to, ("sla", "policies", i, "on_breach", "move_to")
                )
        for j, step in enumerate(self.escalation.steps if self.escalation else []):
            check_queue(step.queue, ("escalation", "steps", j, "queue"))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def escalation_for(self, rules: list[str]) -> tuple[str | None, Escalation | None]:
        """The escalation of a conversation that matched `rules` (in order): the first of
        them that has one, else the routing-wide one (source `None`)."""
        by_name = {r.name: r for r in self.rules}
        for name in rules:
            rule = by_name.get(name)
            if rule is not None and rule.escalation is not None:
                return name, rule.escalation
        return None, self.escalation

    def no_reply_for(self, queue: str) -> NoReplyPolicy | None:
        q = self.queue(queue)
        return q.no_reply if q is not None and q.no_reply is not None else self.no_reply

    def offers_for(self, queue: str, channel_kind: str) -> OfferPolicy | None:
        """The offer policy for a conversation of this queue and kind (None: assign)."""
        q = self.queue(queue)
        if q is None or q.offers is None or channel_kind not in q.offers.channel_kinds:
            return None
        return q.offers

    def queue(self, name: str) -> QueueConfig | None:
        """The queue called `name`, or None."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        return None
