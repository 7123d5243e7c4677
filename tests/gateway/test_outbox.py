"""Outbound delivery: retries with backoff, Retry-After, permanent failures, give-up."""

from __future__ import annotations

from typing import Any

from gateway.outbox import backoff
from tests.gateway.conftest import Receiver, agent_token, base_config, wait_for


async def _reply(client: Any, text: str) -> tuple[str, str]:
    _, body = await client.inbound(f"o-{text}", "hello", sender=f"cust-{text}")
    conv_id = body["conversation_id"]
    status, msg = await client.call(
        "POST", f"/v1/conversations/{conv_id}/messages", json={"text": text, "agent": "alice"}
    )
    assert status == 202
    return conv_id, msg["id"]


async def test_retry_then_success(gateway_factory: Any, receiver: Receiver, tmp_path: Any) -> None:
    receiver.script = [500, 429, 503]
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver.url))
    conv_id, msg_id = await _reply(client, "persist")
    await wait_for(lambda: client.message_with_status(conv_id, msg_id, "sent"))
    assert len(receiver.requests) == 4
    assert {h["webhook-id"] for h, _ in receiver.requests} == {msg_id}  # same id on every attempt
    assert [b["attempt"] for b in receiver.bodies()] == [1, 2, 3, 4]


async def test_client_error_fails_with_reason_and_event(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any
) -> None:
    receiver.script = [422]
    gw, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver.url))
    conv_id, msg_id = await _reply(client, "rejected")
    msg = await wait_for(lambda: client.message_with_status(conv_id, msg_id, "failed"))
    assert "HTTP 422" in msg["reason"]
    assert len(receiver.requests) == 1
    events = [e for e in await gw.store.events_since(0, 1000) if e.type == "message.failed"]
    assert events and events[0].data["message"]["id"] == msg_id


async def test_gives_up_after_max_attempts(gateway_factory: Any, tmp_path: Any) -> None:
    _, client = await gateway_factory(
        base_config(tmp_path / "db.sqlite", "http://127.0.0.1:9/closed")
    )
    conv_id, msg_id = await _reply(client, "nowhere")
    msg = await wait_for(lambda: client.message_with_status(conv_id, msg_id, "failed"), timeout=10)
    assert msg["reason"].startswith("gave up after 4 attempts")


def test_backoff_grows_with_jitter_and_cap() -> None:
    low = [backoff(n, 1.0, 60.0, rng=lambda: 0.0) for n in range(1, 9)]
    high = [backoff(n, 1.0, 60.0, rng=lambda: 1.0) for n in range(1, 9)]
    assert low == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert high == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


async def test_agent_cannot_reply_on_someone_elses_conversation(gateway_factory: Any) -> None:
    _, client = await gateway_factory()
    _, body = await client.inbound("x", "hello")
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    other = "bob" if conv["assignee"] == "alice" else "alice"
    s, _ = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token(other),
        json={"text": "hi"},
    )
    assert s == 403


def test_retry_after_is_honoured_within_max_delay() -> None:
    from connectors.base import DeliveryResult
    from gateway.config import OutboxConfig
    from gateway.outbox import retry_delay

    cfg = OutboxConfig(base_delay=1.0, max_delay=60.0)
    assert retry_delay(3, DeliveryResult.retry("429", retry_after=7), cfg) == 7
    assert retry_delay(3, DeliveryResult.retry("429", retry_after=float("inf")), cfg) == 60
    assert retry_delay(3, DeliveryResult.retry("429", retry_after=1e9), cfg) == 60
    assert retry_delay(3, DeliveryResult.retry("429", retry_after=-5), cfg) == 0
    assert 2.0 <= retry_delay(3, DeliveryResult.retry("503"), cfg) <= 4.0


async def test_reply_on_a_channel_no_longer_configured_is_refused(gateway_factory: Any) -> None:
    gw, client = await gateway_factory()
    _, body = await client.inbound("gone-1", "hello")
    gw.connectors.pop("api")  # as after a restart with the channel removed from the config
    status, err = await client.call(
        "POST",
        f"/v1/conversations/{body['conversation_id']}/messages",
        json={"text": "hi", "agent": "alice"},
    )
    assert status == 409 and "api" in err["error"]["message"]
