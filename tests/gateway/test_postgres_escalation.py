"""Escalation on PostgreSQL with two gateway instances sharing one database (issue 12 on
issue 11's store): a deadline both instances see fires once, an offer is made once, and
either instance takes the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.store.postgres import PostgresStore
from tests.gateway.test_escalation import (
    Clock,
    answer,
    loads,
    offer_config,
    settle,
    stored_events,
)


async def test_two_instances_expire_an_offer_once_and_either_takes_the_answer(
    gateway_factory: Callable[..., Any], tmp_path: Path, pg_dsn: str
) -> None:
    clock = Clock()
    cfg = offer_config(tmp_path, away=False)
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    gw_a, a = await gateway_factory(cfg, clock)
    gw_b, b = await gateway_factory(cfg, clock)
    assert isinstance(gw_a.store, PostgresStore) and gw_a.store.instance != gw_b.store.instance
    _, body = await a.inbound("pg-o1", "hello")
    conv_id = body["conversation_id"]
    await asyncio.gather(settle(gw_a), settle(gw_b))  # both route it: one offer
    conv = await b.conversation(conv_id)
    assert conv["offer"]["agent"] == "alice" and conv["offer"]["expires_at"] == clock.t + 30
    assert await loads(b) == {"alice": 1, "bob": 0, "carol": 0}
    # The offer times out; both instances' timers fire it: expired once, offered to bob once.
    clock.t += 30
    await asyncio.gather(settle(gw_a), settle(gw_b))
    await asyncio.gather(settle(gw_a), settle(gw_b))
    assert (await a.conversation(conv_id))["offer"]["agent"] == "bob"
    assert await loads(a) == {"alice": 0, "bob": 1, "carol": 0}
    code, accepted = await answer(b, conv_id, "bob", "accept")
    assert code == 200 and accepted["assignee"] == "bob" and accepted["status"] == "assigned"
    assert (await answer(a, conv_id, "bob", "accept"))[0] == 409
    assert await loads(a) == {"alice": 0, "bob": 1, "carol": 0}
    offer_events = [(t, d["agent"]) for t, d in await stored_events(gw_a, "offer.")]
    assert offer_events == [
        ("offer.created", "alice"),
        ("offer.expired", "alice"),
        ("offer.created", "bob"),
        ("offer.accepted", "bob"),
    ]
    assigned = [d for _, d in await stored_events(gw_b, "conversation.assigned")]
    assert [(d["conversation_id"], d["agent"]) for d in assigned] == [(conv_id, "bob")]
