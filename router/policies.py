"""Time-driven routing policies (pure): escalation steps, offers, reassignment when the
assignee does not reply, sticky routing and what happens when an agent goes offline.

The models are part of the `routing:` config; the functions take the stamps the store
keeps (when a conversation started waiting, which step it reached, when the customer last
wrote, when an agent went offline) and `now`, and return decisions and when the next thing
becomes due. Nothing here sleeps, reads a clock or touches the store.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .reasons import Reason

Priority = Literal["low", "normal", "high", "urgent"]
PRIORITY_RANK: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
PRIORITY_NAMES = {rank: name for name, rank in PRIORITY_RANK.items()}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90s`, `15m`, `72h`, `7d`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 15m, 72h, 7d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError("a duration is a number of seconds or a string like 15m, 72h, 7d")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
SkillLevel = Annotated[int, Field(ge=1, le=10)]


def format_duration(seconds: float) -> str:
    """`90` → `1m30s`, `7200` → `2h`: durations as people write them in the config."""
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationStep(_Strict):
    """One step: `after` this long waiting (counted from when the conversation started
    waiting, not from the previous step), widen what it needs or move it."""

    after: PositiveDuration
    skills: dict[str, SkillLevel | None] | None = Field(
        None,
        description="Lower a required skill's minimum level to this (never raises it); "
        "null drops that skill from the requirements.",
    )
    clear_skills: bool = Field(False, description="Drop every skill requirement.")
    queue: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Move the conversation to this (overflow) queue."
    )
    priority: Priority | None = Field(
        None, description="Raise the priority to this (never lowers it)."
    )

    @model_validator(mode="after")
    def _does_something(self) -> EscalationStep:
        if not (self.skills or self.clear_skills or self.queue or self.priority):
            raise ValueError(
                "a step changes something: give skills, clear_skills, queue or priority"
            )
        return self


class Escalation(_Strict):
    """Ordered steps for a conversation nobody has taken yet."""

    steps: Annotated[list[EscalationStep], Field(min_length=1)]
    after_last: Literal["stay", "notify"] = Field(
        description="After the last step: `stay` (it keeps waiting as the last step left "
        "it, nothing more happens) or `notify` (also an `conversation.escalation_exhausted` "
        "event `notify_after` the last step, for a webhook to page someone)."
    )
    notify_after: Duration = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> Escalation:
        afters = [s.after for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(afters)):
            raise ValueError("steps: each `after` must be longer than the previous step's")
        return self


class OfferPolicy(_Strict):
    """Offer conversations of live channels to one agent at a time (opt-in, per queue)."""

    timeout: PositiveDuration = 30.0
    channel_kinds: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["webchat"],
        description="The live channel kinds whose conversations are offered; the others "
        "are assigned directly.",
    )
    away_on_timeout: bool = Field(
        False, description="An agent who lets an offer time out is set away."
    )


class NoReplyPolicy(_Strict):
    """Give a conversation back to routing when its assignee does not answer the
    customer within `after` (counted from the customer's message, or from the assignment
    when that came later)."""

    after: PositiveDuration
    by_channel_kind: dict[str, PositiveDuration] = Field(
        default_factory=dict, description="Another time for some channel kinds (webchat: 2m)."
    )

    def after_for(self, channel_kind: str) -> float:
        return self.by_channel_kind.get(channel_kind, self.after)


class StickyPolicy(_Strict):
    """A reopened conversation or a returning customer goes back to the agent who last
    answered them, when that agent serves the queue, is online with capacity and answered
    within `window`; else it is routed as usual."""

    window: PositiveDuration


class OfflinePolicy(_Strict):
    """What happens to the conversations of an agent who goes offline."""

    policy: Literal["keep", "requeue"] = "keep"
    grace: Duration = Field(
        300.0, description="Requeue only once the agent has been offline this long."
    )


# --- escalation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    """What routing needs of a conversation: queue, priority rank and required skills."""

    queue: str
    priority: int
    skills: dict[str, int] = field(hash=False)


@dataclass(frozen=True)
class StepOutcome:
    """The conversation after escalation steps, and what changed (for its event)."""

    routed: Routed
    step: int  # steps applied so far (0: none)
    changes: list[str]
    next_due: float | None  # the next step (or the exhausted notice), None: nothing more
    exhausted: bool  # the `notify` notice is due now


def apply_step(step: EscalationStep, routed: Routed) -> tuple[Routed, list[str]]:
    """One step applied to `routed`: what it becomes and what changed, in words."""
    queue, priority, skills = routed.queue, routed.priority, dict(routed.skills)
    changes: list[str] = []
    if step.clear_skills and skills:
        changes.append(Reason("escalation.no_skills", was=_skills_text(skills)))
        skills = {}
    for name, level in (step.skills or {}).items():
        have = skills.get(name)
        if have is None:
            continue
        if level is None:
            del skills[name]
            changes.append(Reason("escalation.skill_dropped", skill=name))
        elif level < have:
            skills[name] = level
            changes.append(Reason("escalation.skill_lowered", skill=name, level=level, was=have))
    if step.queue is not None and step.queue != queue:
        changes.append(Reason("escalation.queue", queue=repr(step.queue), was=repr(queue)))
        queue = step.queue
    if step.priority is not None and PRIORITY_RANK[step.priority] > priority:
        changes.append(
            Reason("escalation.priority", priority=step.priority, was=PRIORITY_NAMES[priority])
        )
        priority = PRIORITY_RANK[step.priority]
    return Routed(queue, priority, skills), changes


def _skills_text(skills: Mapping[str, int]) -> str:
    return ", ".join(f"{k}>={v}" for k, v in sorted(skills.items())) or "none"


def due_at(esc: Escalation, since: float, step: int) -> float | None:
    """When the next thing happens to a conversation waiting since `since` that has
    reached `step`: the next step, the `notify` notice, or None."""
    if step < len(esc.steps):
        return since + esc.steps[step].after
    if esc.after_last == "notify" and step == len(esc.steps):
        return since + esc.steps[-1].after + esc.notify_after
    return None


def escalate(esc: Escalation, routed: Routed, since: float, step: int, now: float) -> StepOutcome:
    """Apply every step that fell due by `now` (several when the process was down), in
    order. `step` is how many were applied already; the notice counts as one more step."""
    changes: list[str] = []
    exhausted = False
    while True:
        due = due_at(esc, since, step)
        if due is None or due > now:
            break
        if step < len(esc.steps):
            routed, changed = apply_step(esc.steps[step], routed)
            changes.extend(changed or [Reason("escalation.nothing", step=step + 1)])
        else:
            exhausted = True
        step += 1
    return StepOutcome(routed, step, changes, due_at(esc, since, step), exhausted)


def describe(
    esc: Escalation | None, source: str | None, since: float | None, step: int
) -> dict[str, Any]:
    """The escalation as the API and explain show it: the step reached, each step with
    when it is (or was) due, and what happens after the last one."""
    if esc is None:
        return {"rule": None, "step": 0, "of": 0, "steps": [], "after_last": None, "next_at": None}
    steps = []
    for i, s in enumerate(esc.steps):
        what = []
        if s.clear_skills:
            what.append("drop every skill requirement")
        for name, level in (s.skills or {}).items():
            what.append(f"no {name} requirement" if level is None else f"{name}>={level} at most")
        if s.queue:
            what.append(f"move to queue {s.queue!r}")
        if s.priority:
            what.append(f"priority at least {s.priority}")
        steps.append(
            {
                "step": i + 1,
                "after": format_duration(s.after),
                "does": "; ".join(what),
                "due_at": None if since is None else since + s.after,
                "done": i < step,
            }
        )
    return {
        "rule": source,
        "step": min(step, len(esc.steps)),
        "of": len(esc.steps),
        "steps": steps,
        "after_last": esc.after_last,
        "exhausted": step > len(esc.steps),
        "next_at": None if since is None else due_at(esc, since, step),
    }


# --- offers, reassignment, offline -----------------------------------------------------------


def offline_due(policy: OfflinePolicy, offline_since: float) -> float | None:
    """When an agent offline since `offline_since` loses its conversations (None: never)."""
    if policy.policy == "keep":
        return None
    return offline_since + policy.grace


def no_reply_due(
    policy: NoReplyPolicy | None, channel_kind: str, last_inbound_at: float, assigned_at: float
) -> float | None:
    """When an assignee who has not answered the customer's last message loses the
    conversation (None: no policy)."""
    if policy is None:
        return None
    return max(last_inbound_at, assigned_at) + policy.after_for(channel_kind)
