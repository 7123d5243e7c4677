"""The deadlines loop: sources fire when due, on an injected clock, and a failing source
neither stops the others nor fills the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.time.deadlines import Deadlines


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Stamps:
    """A source whose deadlines are data: due times kept like a store keeps stamps."""

    name = "stamps"
    wake_on = frozenset({"conversation.created"})

    def __init__(self, due: list[float]) -> None:
        self.due = sorted(due)
        self.fired: list[tuple[float, float]] = []

    async def next_due(self, now: float) -> float | None:
        return self.due[0] if self.due else None

    async def fire(self, now: float) -> None:
        while self.due and self.due[0] <= now:
            self.fired.append((self.due.pop(0), now))


class Broken:
    name = "broken"
    wake_on: frozenset[str] = frozenset()

    async def next_due(self, now: float) -> float | None:
        raise RuntimeError("store away")

    async def fire(self, now: float) -> None:  # pragma: no cover - never due
        raise AssertionError


async def test_fires_what_is_due_and_reports_the_next() -> None:
    clock = Clock()
    source = Stamps([990.0, 1_010.0, 1_020.0])
    deadlines = Deadlines(clock)
    deadlines.add(source)
    assert await deadlines.run_once() == 1_010.0
    assert source.fired == [(990.0, 1_000.0)]  # due while "down": fired at once
    clock.t = 1_015.0
    assert await deadlines.run_once() == 1_020.0
    clock.t = 1_030.0
    assert await deadlines.run_once() is None
    assert [d for d, _ in source.fired] == [990.0, 1_010.0, 1_020.0]


async def test_a_failing_source_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    source = Stamps([1_000.0])
    deadlines = Deadlines(clock)
    deadlines.add(Broken())
    deadlines.add(source)
    with caplog.at_level(logging.INFO, logger="switchboard.deadlines"):
        for _ in range(5):
            await deadlines.run_once()
    assert source.fired == [(1_000.0, 1_000.0)]
    assert len([r for r in caplog.records if r.name == "switchboard.deadlines"]) == 1


async def test_the_loop_wakes_on_a_relevant_event_and_when_time_moves() -> None:
    clock = Clock()
    source = Stamps([])
    deadlines = Deadlines(clock, max_sleep=0.05)
    deadlines.add(source)
    await deadlines.start()
    try:
        source.due.append(1_000.0)
        deadlines.on_event("conversation.created")
        for _ in range(100):
            if source.fired:
                break
            await asyncio.sleep(0.01)
        assert source.fired == [(1_000.0, 1_000.0)]
        source.due.append(2_000.0)
        clock.t = 2_000.0  # the wall clock jumps; no event: found within max_sleep
        for _ in range(100):
            if len(source.fired) == 2:
                break
            await asyncio.sleep(0.01)
        assert source.fired[1] == (2_000.0, 2_000.0)
    finally:
        await deadlines.stop()
