"""The KPI follower: folds the event log into the store's KPI rollups, answers `/v1/stats`
and keeps the Prometheus KPI metrics.

The fold runs in the background (woken by committed events, at most once a second) and
again before every `/v1/stats` answer, so an answer includes every event committed before
the request. Each fold is one store transaction that also advances its cursor: whoever
folds first does the work, the other finds nothing (several instances may run this).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.events import EventBus
from gateway.kpis.figures import Duration, StatsQuery, TimedFact, Worktime, report
from gateway.metrics import METRICS, Metrics
from gateway.store.base import StatsStore, Store

log = logging.getLogger("switchboard.kpis")

SURVEY_WINDOW = 30 * 86400.0
REQUEST_PASSES = 10  # folded before an answer: up to 20,000 events


class Kpis:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Callable[[], float],
        metrics: Metrics = METRICS,
        duration: Duration | None = None,
        interval: float = 1.0,
        worktime: Worktime | None = None,
        settle: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        if not isinstance(store, StatsStore):
            raise TypeError(f"{type(store).__name__} keeps no KPI rollups")
        self.store: StatsStore = store
        self.bus = bus
        self.clock = clock
        self.metrics = metrics
        # A business-hours variant passes `business_seconds_between` here.
        self.duration = duration
        self.interval = interval
        # Business seconds of a queue (kept beside the calendar ones), and with SLAs: what
        # brings the SLA clocks up to the log before a fold (which then decides targets).
        self.worktime = worktime
        self.settle = settle
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # --- folding -----------------------------------------------------------------------------
    async def catch_up(self, limit: int = 2000, passes: int | None = None) -> int:
        """Fold the events committed so far (at most `passes` transactions of `limit`);
        returns how many were folded."""
        total, done = 0, 0
        if self.settle is not None:
            await self.settle()
        while passes is None or done < passes:
            n, timed = await self.store.stats_fold(limit, self.worktime, self.settle is not None)
            self._observe(timed)
            total += n
            done += 1
            if n < limit:
                break
        return total

    def _observe(self, facts: list[TimedFact]) -> None:
        for f in facts:
            hist = (
                self.metrics.first_response_seconds
                if f.kind == "first_response"
                else self.metrics.resolution_seconds
            )
            hist.labels(f.channel, f.queue).observe(max(0.0, f.seconds))

    def poke(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self.bus.listen(lambda event: self.poke())
        self._task = asyncio.create_task(self._run(), name="kpis")

    async def stop(self, timeout: float = 5.0) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=timeout)
        self._task = None

    async def _run(self) -> None:
        while True:
            # Also every 5 s: a writer in another process wakes nobody here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)
            self._wake.clear()
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kpi fold failed")
            await asyncio.sleep(self.interval)

    # --- answers -----------------------------------------------------------------------------
    async def stats(self, query: StatsQuery) -> dict[str, Any]:
        # What committed before the request, unless the fold is far behind (the first start
        # after migration 14 on a long log): the background loop does the rest.
        await self.catch_up(passes=REQUEST_PASSES)
        totals, groups = await self.store.stats_read(query, self.duration)
        return report(query, totals, groups)

    async def survey_rows(self, start: float, end: float) -> list[tuple[Any, ...]]:
        return await self.store.survey_rows(start, end)

    async def refresh_gauges(self) -> None:
        """Before a scrape: backlog and waiting by queue, agents online, survey scores (as
        folded by the background loop, at most a second or so behind)."""
        g = await self.store.stats_gauges(self.clock(), SURVEY_WINDOW)
        m = self.metrics
        m.backlog.clear()
        m.queue_waiting.clear()
        for queue, (open_, waiting) in g["backlog"].items():
            m.backlog.labels(queue).set(open_)
            m.queue_waiting.labels(queue).set(waiting)
        m.agents_online.set(g["online"])
        s = g["surveys"]
        m.survey_score.clear()
        m.survey_responses.clear()
        if s is not None:
            m.survey_responses.labels("csat").set(s.csat_answers)
            m.survey_responses.labels("nps").set(s.nps_answers)
            m.survey_responses.labels("ces").set(s.ces_answers)
            if s.csat_answers:
                m.survey_score.labels("csat").set(100 * s.csat_satisfied / s.csat_answers)
            if s.nps_answers:
                m.survey_score.labels("nps").set(
                    100 * (s.nps_promoters - s.nps_detractors) / s.nps_answers
                )
            if s.ces_answers:
                m.survey_score.labels("ces").set(s.ces_sum / s.ces_answers)
