"""Agent load accounting: one row per change of a conversation → how the counters move."""

from __future__ import annotations

import pytest

from gateway.domain.load import Holder, assignment_limit, capacity_for, changes, has_room

CHANGES: list[tuple[str, Holder, Holder, list[tuple[str, int]]]] = [
    ("claimed by the router", (None, "open"), ("al", "assigned"), [("al", +1)]),
    ("agent answers: still hers", ("al", "assigned"), ("al", "pending"), []),
    ("customer answers: still hers", ("al", "pending"), ("al", "assigned"), []),
    ("reassigned to a colleague", ("al", "assigned"), ("bo", "assigned"), [("al", -1), ("bo", +1)]),
    ("reassigned while pending", ("al", "pending"), ("bo", "pending"), [("al", -1), ("bo", +1)]),
    ("resolved: frees her capacity", ("al", "assigned"), ("al", "resolved"), [("al", -1)]),
    ("resolved while pending", ("al", "pending"), ("al", "resolved"), [("al", -1)]),
    ("transferred to another queue", ("al", "assigned"), (None, "open"), [("al", -1)]),
    ("reopened: nobody has it", ("al", "resolved"), (None, "open"), []),
    ("a customer reopens it", ("al", "resolved"), (None, "open"), []),
    ("closed after resolving", ("al", "resolved"), ("al", "closed"), []),
    ("open and waiting: nobody's load", (None, "open"), (None, "open"), []),
    ("assigned by hand", (None, "open"),
     ("bo", "assigned"), [("bo", +1)]),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "before", "after", "moves"), CHANGES,
                         ids=[r[0] for r in CHANGES])  # fmt: skip
def test_counters_move(
    situation: str, before: Holder, after: Holder, moves: list[tuple[str, int]]
) -> None:
    assert changes(before, after) == moves


CAPACITY: list[tuple[str, dict[str, int], str, int]] = [
    ("the channel kind's own entry", {"default": 5, "email": 1}, "email", 1),
    ("the default for other kinds", {"default": 5, "email": 1}, "sms", 5),
    ("no entry at all: none", {}, "email", 0),
    ("zero for a kind, whatever the default", {"default": 3, "webchat": 0}, "webchat", 0),
]


@pytest.mark.parametrize(("situation", "capacity", "kind", "expected"), CAPACITY,
                         ids=[r[0] for r in CAPACITY])  # fmt: skip
def test_capacity_for(situation: str, capacity: dict[str, int], kind: str, expected: int) -> None:
    assert capacity_for(capacity, kind) == expected


ROOM: list[tuple[str, int, int, bool]] = [
    ("empty", 0, 2, True),
    ("one left", 1, 2, True),
    ("full", 2, 2, False),
    ("over (capacity lowered meanwhile)", 3, 2, False),
    ("capacity zero", 0, 0, False),
]


@pytest.mark.parametrize(("situation", "load", "capacity", "room"), ROOM, ids=[r[0] for r in ROOM])
def test_has_room(situation: str, load: int, capacity: int, room: bool) -> None:
    assert has_room(load, capacity) is room


LIMITS: list[tuple[str, int | None, int, int | None]] = [
    ("forced: no limit", None, 2, None),
    ("as read", 2, 2, 2),
    ("lowered since it was read", 2, 1, 1),
    ("raised since it was read: what the caller saw", 1, 4, 1),
]


@pytest.mark.parametrize(("situation", "requested", "current", "limit"), LIMITS,
                         ids=[r[0] for r in LIMITS])  # fmt: skip
def test_assignment_limit(
    situation: str, requested: int | None, current: int, limit: int | None
) -> None:
    assert assignment_limit(requested, current) == limit
