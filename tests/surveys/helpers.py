"""Shared pieces of the survey tests: a clock the test moves, and API shortcuts."""

from __future__ import annotations

import time
from typing import Any

from gateway.app import Gateway
from gateway.store.postgres import PostgresStore
from tests.gateway.conftest import Client, wait_for


class Clock:
    """Real time plus an offset the test moves forward (no sleeping)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds


async def resolve(client: Client, conv_id: str) -> dict[str, Any]:
    status, body = await client.call("POST", f"/v1/conversations/{conv_id}/resolve")
    assert status == 200, body
    return dict(body)


async def surveys(client: Client, **params: str) -> list[dict[str, Any]]:
    status, page = await client.call("GET", "/v1/surveys", params=params)
    assert status == 200, page
    return list(page["items"])


async def decided(gw: Gateway, conv_id: str) -> list[str]:
    """The survey decisions recorded for a conversation (sent, or why not)."""

    if isinstance(gw.store, PostgresStore):
        rows = await gw.store.pool.fetch(
            "SELECT outcome FROM survey_decisions WHERE conversation_id=$1 ORDER BY decided_at",
            conv_id,
        )
        return [str(r[0]) for r in rows]

    def op(conn: Any) -> list[str]:
        rows = conn.execute(
            "SELECT outcome FROM survey_decisions WHERE conversation_id=? ORDER BY decided_at",
            (conv_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    return list(await gw.store._run(op))  # type: ignore[attr-defined]


async def fire(gw: Gateway, clock: Clock, seconds: float) -> None:
    """Move time on and let the deadlines loop look (as a committed event would)."""
    clock.advance(seconds)
    gw.deadlines.poke()


async def event_types(gw: Gateway) -> list[str]:
    return [e.type for e in await gw.store.events_since(0, 10_000)]


async def until(predicate: Any, timeout: float = 10.0) -> Any:
    return await wait_for(predicate, timeout=timeout)
