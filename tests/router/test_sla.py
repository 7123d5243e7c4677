"""SLA clocks (pure), table-driven on an injected timeline: business hours, the pause while
waiting on the customer, next-response cycles, warnings and breaches, policy choice."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from router.hours import Calendar, HoursConfig
from router.sla import SlaConfig, SlaPolicy, Timeline, alarms, choose_policy, compute

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0
OFFICE = Calendar.of(
    HoursConfig.model_validate(
        {
            "timezone": "Europe/Berlin",
            "weekly": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        }
    )
)
POLICY = SlaPolicy(name="std", first_response="2h", next_response="1h", resolution="8h")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def local(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, BERLIN).strftime("%a %H:%M")


def timeline(
    created: str, inbound: list[str], replies: list[str], resolved: str | None = None
) -> Timeline:
    return Timeline(
        at(created),
        [at(created), *(at(t) for t in inbound)],
        [at(t) for t in replies],
        at(resolved) if resolved else None,
    )


@pytest.mark.parametrize(
    ("case", "tl", "expect"),
    [
        (
            "first response counted in business hours, over the weekend",
            timeline("2026-03-27 17:00", [], []),  # a Friday
            {"first_response": ("Mon 09:00", None), "resolution": ("Mon 15:00", None)},
        ),
        (
            "first response met; resolution paused while waiting on the customer",
            timeline("2026-03-23 09:00", [], ["2026-03-23 10:00"]),
            {
                "first_response": ("Mon 11:00", "Mon 10:00"),
                "resolution": (None, None),  # paused: 7h left
            },
        ),
        (
            "the customer answers: resolution resumes where it stopped, next response runs",
            timeline("2026-03-23 09:00", ["2026-03-23 14:00"], ["2026-03-23 10:00"]),
            {
                "first_response": ("Mon 11:00", "Mon 10:00"),
                "next_response": ("Mon 15:00", None),
                "resolution": ("Tue 11:00", None),  # 1h used, 7h from 14:00: 4h Mon + 3h Tue
            },
        ),
        (
            "a next response met closes the cycle",
            timeline(
                "2026-03-23 09:00",
                ["2026-03-23 14:00"],
                ["2026-03-23 10:00", "2026-03-23 14:30"],
            ),
            {
                "first_response": ("Mon 11:00", "Mon 10:00"),
                "next_response": ("Mon 15:00", "Mon 14:30"),
                "resolution": (None, None),
            },
        ),
        (
            "resolved: the resolution clock is met",
            timeline("2026-03-23 09:00", [], ["2026-03-23 10:00"], resolved="2026-03-23 11:00"),
            {"first_response": ("Mon 11:00", "Mon 10:00"), "resolution": (None, "Mon 11:00")},
        ),
    ],
)
def test_due_times(
    case: str, tl: Timeline, expect: dict[str, tuple[str | None, str | None]]
) -> None:
    due = compute(POLICY, OFFICE, tl)
    got = {name: (local(t.due), local(t.met_at)) for name, t in due.targets.items()}
    assert got == expect, case


def test_paused_keeps_what_is_left() -> None:
    due = compute(POLICY, OFFICE, timeline("2026-03-23 09:00", [], ["2026-03-23 10:00"]))
    assert due.paused
    assert due.targets["resolution"].remaining == 7 * H
    assert due.open_dues() == {}


def test_dst_counts_real_hours() -> None:
    # 24/7 on the night the clocks go forward: a 2h target is 2 real hours, whatever the wall.
    always = Calendar.of(
        HoursConfig(timezone="Europe/Berlin", weekly={d: ["00:00-24:00"] for d in ("sat", "sun")})
    )
    created = at("2026-03-29 01:30")
    due = compute(
        SlaPolicy(name="x", first_response="2h"), always, Timeline(created, [created], [])
    )
    assert due.targets["first_response"].due == created + 2 * H
    assert local(due.targets["first_response"].due) == "Sun 04:30"


@pytest.mark.parametrize(
    ("fired", "now_replies", "expect"),
    [
        (
            {},
            [],
            [
                ("first_response", "warning", "Mon 10:45"),
                ("first_response", "breached", "Mon 11:00"),
            ],
        ),
        (
            {"first_response": {"warning": 1.0}},
            [],
            [("first_response", "breached", "Mon 11:00")],
        ),
        ({"first_response": {"warning": 1.0, "breached": 2.0}}, [], []),
        # Answered in time: nothing to fire.
        ({}, ["2026-03-23 10:30"], []),
        # Answered late and the breach not recorded (the process was down): it fires.
        ({}, ["2026-03-23 11:30"], [("first_response", "breached", "Mon 11:00")]),
    ],
)
def test_alarms(
    fired: dict[str, dict[str, Any]], now_replies: list[str], expect: list[tuple[str, str, str]]
) -> None:
    policy = SlaPolicy(name="fr", first_response="2h")
    due = compute(policy, OFFICE, timeline("2026-03-23 09:00", [], now_replies))
    got = [(t, k, local(a)) for t, k, a in alarms(due, fired, 15 * 60)]
    assert got == expect


def test_a_new_next_response_cycle_can_warn_and_breach_again() -> None:
    policy = SlaPolicy(name="nr", next_response="1h")
    tl = timeline("2026-03-23 09:00", ["2026-03-23 14:00"], ["2026-03-23 10:00"])
    due = compute(policy, OFFICE, tl)
    old_cycle = {"next_response": {"since": at("2026-03-23 09:00"), "breached": 1.0}}
    assert [k for _, k, _ in alarms(due, old_cycle, 600)] == ["warning", "breached"]
    same_cycle = {"next_response": {"since": at("2026-03-23 14:00"), "breached": 1.0}}
    assert alarms(due, same_cycle, 600) == []


@pytest.mark.parametrize(
    ("priority", "queue", "attributes", "policy"),
    [
        ("urgent", "general", {}, "urgent"),
        ("normal", "billing", {"segment": "vip"}, "vip-billing"),
        ("normal", "general", {"segment": "vip"}, "vip"),
        ("normal", "general", {"segment": "free"}, "default"),
        ("low", "general", {}, "default"),
    ],
)
def test_the_first_matching_policy_applies(
    priority: str, queue: str, attributes: dict[str, str], policy: str
) -> None:
    cfg = SlaConfig.model_validate(
        {
            "policies": [
                {"name": "urgent", "when": {"priority": ["urgent"]}, "first_response": "15m"},
                {
                    "name": "vip-billing",
                    "when": {"queue": ["billing"], "segment": ["vip"]},
                    "first_response": "30m",
                },
                {"name": "vip", "when": {"segment": ["vip"]}, "first_response": "1h"},
                {"name": "default", "first_response": "8h"},
            ]
        }
    )
    chosen = choose_policy(cfg, priority, queue, attributes)
    assert chosen is not None and chosen.name == policy


def test_routing_order_by_time_to_breach_and_closed_queues_park() -> None:
    from router import AgentSnapshot, ConversationSnapshot, QueueConfig, plan_assignments

    queues = {"a": QueueConfig(name="a"), "b": QueueConfig(name="b")}
    agent = AgentSnapshot("ann", "Ann", "online", frozenset({"a", "b"}), {}, capacity=1, load=0)
    old = ConversationSnapshot("old", "a", 1, {}, "email", created_at=100.0, sla_due=5_000.0)
    due = ConversationSnapshot("due", "a", 1, {}, "email", created_at=200.0, sla_due=1_000.0)
    closed = ConversationSnapshot("cl", "b", 3, {}, "email", created_at=50.0, sla_due=10.0)
    waiting = [old, due, closed]
    by_age = plan_assignments(waiting, queues, [agent], {}, 0.0, is_open=lambda q: q != "b")
    by_due = plan_assignments(
        waiting, queues, [agent], {}, 0.0, by_sla=True, is_open=lambda q: q != "b"
    )
    assert [d.conversation_id for d in by_age] == ["old"]
    assert [d.conversation_id for d in by_due] == ["due"]
    # Open, the urgent one of queue b comes first whatever the order.
    assert [d.conversation_id for d in plan_assignments(waiting, queues, [agent], {}, 0.0)] == [
        "cl"
    ]
