"""How long the event loop was held: a task that sleeps `interval` in a loop and records by
how much each wake-up came late. For tests and benches (`bench/`).

    async with LoopLag() as lag:
        ...              # the work to watch
    assert lag.max < 0.1  # the longest stall, in seconds

A stall shows up as the overshoot of the one sleep it delayed, so `max` is the longest
time the loop could not run anything else (within `interval` or so)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType


class LoopLag:
    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.max = 0.0
        self.samples = 0
        self.total = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            late = time.perf_counter() - before - self.interval
            self.samples += 1
            self.total += max(0.0, late)
            self.max = max(self.max, late)

    def start(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def mean(self) -> float:
        return self.total / self.samples if self.samples else 0.0

    def __str__(self) -> str:
        return (
            f"max stall {self.max * 1000:.1f} ms, mean overshoot {self.mean * 1000:.2f} ms "
            f"over {self.samples} samples"
        )

    async def __aenter__(self) -> LoopLag:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
