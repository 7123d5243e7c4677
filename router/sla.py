"""SLA policies (pure): which policy a conversation falls under, and its due times.

Targets are business time in the queue's calendar (router/hours.py). A conversation has
three clocks:

- first response: from its creation until the first agent reply;
- next response: from the customer's first message after an agent reply until the next
  agent reply (a new cycle each time the customer writes again after an answer);
- resolution: from creation until resolved, paused while the conversation waits on the
  customer (`pending`: from an agent reply until the customer's next message).

`compute` is a function of the conversation's stamps (creation, message times, resolution),
not of when it runs: the due times come out the same after a restart, however late.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .hours import Calendar, add_business_seconds, business_seconds_between, duration

TARGETS = ("first_response", "next_response", "resolution")
Target = Literal["first_response", "next_response", "resolution"]
PriorityName = Literal["low", "normal", "high", "urgent"]
_Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaWhen(_Model):
    """Which conversations a policy covers; every key given must hold (none: all)."""

    priority: Annotated[list[PriorityName], Field(min_length=1)] | None = None
    queue: _Names | None = None
    segment: _Names | None = Field(
        None, description="Values of the contact attribute `sla.segment_attribute`."
    )


class BreachActions(_Model):
    """What a breach does besides the `sla.breached` event (which webhooks carry)."""

    bump_priority: bool = Field(False, description="One priority step up (to urgent at most).")
    move_to: str | None = Field(None, description="Move a waiting conversation to this queue.")


class SlaPolicy(_Model):
    name: Annotated[str, Field(min_length=1)]
    when: SlaWhen = Field(default_factory=SlaWhen)  # type: ignore[arg-type]
    first_response: float | None = Field(None, gt=0, description="Business time, e.g. 1h.")
    next_response: float | None = Field(None, gt=0)
    resolution: float | None = Field(None, gt=0)
    on_breach: BreachActions = Field(default_factory=BreachActions)  # type: ignore[arg-type]

    @field_validator("first_response", "next_response", "resolution", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else duration(value)


class SlaConfig(_Model):
    """The `routing.sla` block: the first policy whose `when` holds applies."""

    warning: float = Field(
        900.0, ge=0, description="`sla.warning` this long before a due time (e.g. 15m)."
    )
    segment_attribute: str = Field("segment", description="The contact attribute of segments.")
    policies: list[SlaPolicy] = Field(default_factory=list)

    @field_validator("warning", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return duration(value)


def choose_policy(
    config: SlaConfig, priority: str, queue: str, attributes: Mapping[str, Any]
) -> SlaPolicy | None:
    segment = attributes.get(config.segment_attribute)
    for policy in config.policies:
        w = policy.when
        if w.priority is not None and priority not in w.priority:
            continue
        if w.queue is not None and queue not in w.queue:
            continue
        if w.segment is not None and (segment is None or str(segment) not in w.segment):
            continue
        return policy
    return None


@dataclass(frozen=True, slots=True)
class Timeline:
    """What the SLA clocks read: the customer's and the agents' message times."""

    created_at: float
    inbound: Sequence[float]
    agent_replies: Sequence[float]
    resolved_at: float | None = None  # set while resolved (or closed)


@dataclass(frozen=True, slots=True)
class TargetDue:
    due: float | None  # None: paused, met, or the calendar never opens enough
    met_at: float | None = None
    since: float | None = None  # next response: the customer message that started the cycle
    remaining: float | None = None  # business seconds left, while paused


@dataclass(frozen=True, slots=True)
class SlaDue:
    policy: str
    targets: dict[str, TargetDue] = field(default_factory=dict)
    paused: bool = False

    def open_dues(self) -> dict[str, float]:
        """Each target still running (not met, not paused) → its due time."""
        return {
            name: t.due
            for name, t in self.targets.items()
            if t.due is not None and t.met_at is None
        }


def compute(policy: SlaPolicy, calendar: Calendar | None, tl: Timeline) -> SlaDue:
    """The due times of `policy` for a conversation's timeline."""
    end = tl.resolved_at
    inbound = sorted(t for t in tl.inbound if end is None or t <= end)
    replies = sorted(t for t in tl.agent_replies if end is None or t <= end)
    targets: dict[str, TargetDue] = {}
    first_reply = replies[0] if replies else None
    if policy.first_response is not None:
        due = add_business_seconds(calendar, tl.created_at, policy.first_response)
        targets["first_response"] = TargetDue(due, met_at=first_reply)
    last_reply = replies[-1] if replies else None
    if policy.next_response is not None and last_reply is not None:
        # The cycle the customer opened by writing after the last answer (if any), else
        # the last cycle, met by that answer.
        waiting = [t for t in inbound if t > last_reply]
        if waiting and end is None:
            since = waiting[0]
            targets["next_response"] = TargetDue(
                add_business_seconds(calendar, since, policy.next_response), since=since
            )
        else:
            before = replies[:-1]
            asked = [t for t in inbound if t < last_reply and (not before or t > before[-1])]
            if before and asked:
                since = asked[0]
                targets["next_response"] = TargetDue(
                    add_business_seconds(calendar, since, policy.next_response),
                    met_at=last_reply,
                    since=since,
                )
    paused = False
    if policy.resolution is not None:
        consumed = 0.0
        resume = tl.created_at
        active = True
        for t, kind in sorted([(t, 1) for t in inbound] + [(t, 0) for t in replies]):
            if kind == 0 and active:  # an answer: now waiting on the customer
                consumed += business_seconds_between(calendar, resume, t)
                active = False
            elif kind == 1 and not active:  # the customer wrote again
                active, resume = True, t
        left = policy.resolution - consumed
        if active:
            due = add_business_seconds(calendar, resume, left)
            targets["resolution"] = TargetDue(due, met_at=end)
        elif end is not None:
            targets["resolution"] = TargetDue(None, met_at=end, remaining=left)
        else:
            paused = True
            targets["resolution"] = TargetDue(None, remaining=left)
    return SlaDue(policy.name, targets, paused)


Alarm = tuple[str, Literal["warning", "breached"], float]


def alarms(due: SlaDue, fired: Mapping[str, Mapping[str, Any]], lead: float) -> list[Alarm]:
    """What is still to fire, each (target, kind, at): a warning `lead` before a due time and
    the breach at it, for the targets still running and not fired yet. `fired` is what the
    store recorded per target ({"warning": at, "breached": at, "since": cycle start})."""
    out: list[Alarm] = []
    for name, t in due.targets.items():
        if t.due is None:
            continue
        done = fired.get(name, {})
        if name == "next_response" and done.get("since") != t.since:
            done = {}
        if "breached" in done:
            continue
        if t.met_at is None:
            if "warning" not in done and lead > 0:
                out.append((name, "warning", t.due - lead))
            out.append((name, "breached", t.due))
        elif t.met_at > t.due:  # met late, and the breach was not recorded yet
            out.append((name, "breached", t.due))
    return out
