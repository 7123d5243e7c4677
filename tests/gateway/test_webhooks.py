"""Signed event webhooks for a helpdesk beside the gateway: in order, at least once,
verified with the reference Standard Webhooks library, resuming across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import standardwebhooks

from tests.gateway.conftest import SECRET, Receiver, base_config, wait_for


def hook_config(tmp_path: Path, url: str, events: list[str] | None = None) -> dict[str, Any]:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [
        {
            "url": url,
            "secret": SECRET,
            "allow_private_networks": True,  # the receiver listens on loopback
            **({"events": events} if events else {}),
        }
    ]
    return cfg


async def test_events_arrive_signed_in_order_and_survive_failures_and_restarts(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = hook_config(tmp_path, receiver.url, events=["conversation.*", "message.received"])
    gw, client = await gateway_factory(cfg)
    receiver.script = [500]  # the helpdesk hiccups once: retried, nothing lost
    await client.inbound("w1", "hello", sender="c1")
    await wait_for(lambda: len({h["webhook-id"] for h, _ in receiver.requests}) >= 3, timeout=10)
    seen = [standardwebhooks.Webhook(SECRET).verify(raw, h) for h, raw in receiver.requests]
    assert seen[0] == seen[1]  # the refused delivery came again, same id
    types = [e["type"] for e in seen[1:]]
    assert types == ["conversation.created", "message.received", "conversation.assigned"]
    ids = [e["id"] for e in seen[1:]]
    assert ids == sorted(ids)
    assert all(
        h["webhook-id"] == f"evt_{e['id']}"
        for (h, _), e in zip(receiver.requests[1:], seen[1:], strict=True)
    )

    # Stopped, events happen, started again with the same store: they are delivered.
    await gw.stop()
    gw2, client2 = await gateway_factory(cfg)
    before = len(receiver.requests)
    await client2.inbound("w2", "again", sender="c2")
    await wait_for(lambda: len(receiver.requests) >= before + 3, timeout=10)

    async def caught_up() -> bool:  # every event delivered: nothing more is on its way
        cursor = await gw2.store.kv_get("webhooks", f"webhook:{receiver.url}")
        return cursor == str(await gw2.store.last_event_id())

    await wait_for(caught_up, timeout=10)
    delivered = [
        standardwebhooks.Webhook(SECRET).verify(raw, h)["id"] for h, raw in receiver.requests[1:]
    ]
    assert delivered == sorted(delivered) and len(delivered) == len(set(delivered))


async def test_events_during_start_up_are_not_skipped(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    """The cursor is set before the gateway listens: the very first message's events go out."""
    cfg = hook_config(tmp_path, receiver.url)
    _, client = await gateway_factory(cfg)
    await client.inbound("first", "hello")  # at once, no pause after start
    await wait_for(
        lambda: any(b["type"] == "message.received" for b in receiver.bodies()), timeout=10
    )


async def test_adding_a_webhook_before_another_keeps_its_backlog(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = hook_config(tmp_path, receiver.url)
    gw, client = await gateway_factory(cfg)
    await client.inbound("a", "one", sender="c1")
    await wait_for(
        lambda: any(b["type"] == "message.received" for b in receiver.bodies()), timeout=10
    )
    await gw.stop()
    delivered = {b["id"] for b in receiver.bodies()}
    # Another endpoint is added in front of ours; ours keeps its place in the log.
    other = Receiver()
    await other.start()
    cfg["webhooks"].insert(0, {"url": other.url, "secret": SECRET, "allow_private_networks": True})
    _, client2 = await gateway_factory(cfg)
    await client2.inbound("b", "two", sender="c2")
    await wait_for(
        lambda: sum(b["type"] == "message.received" for b in receiver.bodies()) >= 2, timeout=10
    )
    ids = [b["id"] for b in receiver.bodies()]
    assert len(ids) == len(set(ids)), "nothing delivered twice"
    assert delivered <= set(ids)
    await other.stop()
