"""What the KPI fold takes from the routing configuration: the queues' business hours and
the SLA clocks (issue 12), as callables the store's fold calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.kpis.figures import Worktime
from gateway.services import Services
from gateway.store.timekeeping import TimeStore
from gateway.time.sla import sla_planner
from router import RoutingConfig
from router.hours import business_seconds_between
from router.schedule import calendar


def worktime(routing: RoutingConfig) -> Worktime:
    """Business seconds between two instants in a queue's calendar (none: always open)."""

    def seconds(queue: str, a: float, b: float) -> float:
        return business_seconds_between(calendar(routing, queue), a, b)

    return seconds


def sla_settle(
    routing: RoutingConfig, services: Services, store: TimeStore, clock: Callable[[], float]
) -> Callable[[], Awaitable[Any]] | None:
    """Bring the SLA clocks up to the event log (what a fold deciding targets needs);
    None without SLA policies."""
    if routing.sla is None or not routing.sla.policies:
        return None
    planner = sla_planner(routing)

    async def settle() -> None:
        await services.sla_fire(store, clock(), planner)

    return settle
