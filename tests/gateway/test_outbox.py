"""Outbound delivery, every outcome end to end at the production log level: 2xx sent; 4xx
failed at once with the provider's reason; 5xx, 429 and timeouts retried with backoff, then
failed when the attempts or the retry horizon run out, counted across restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.outbox import backoff
from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    Receiver,
    agent_token,
    base_config,
    config_text,
    wait_for,
)
from tests.gateway.test_e2e_daemon import Daemon, free_port


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


def test_backoff_grows_with_full_jitter_and_cap() -> None:
    low = [backoff(n, 1.0, 60.0, rng=lambda: 0.0) for n in range(1, 9)]
    high = [backoff(n, 1.0, 60.0, rng=lambda: 1.0) for n in range(1, 9)]
    assert low == [0.0] * 8
    assert high == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff(10_000, 1.0, 300.0, rng=lambda: 1.0) == 300.0  # no overflow


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
    assert 0.0 <= retry_delay(3, DeliveryResult.retry("503"), cfg) <= 4.0  # full jitter


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


async def test_server_error_fails_after_max_attempts_with_the_reason(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any
) -> None:
    receiver.script = [500] * 10
    _, client = await gateway_factory(base_config(tmp_path / "db.sqlite", receiver.url))
    conv_id, msg_id = await _reply(client, "down")
    msg = await wait_for(lambda: client.message_with_status(conv_id, msg_id, "failed"))
    assert msg["reason"].startswith("gave up after 4 attempts") and "500" in msg["reason"]
    assert [b["attempt"] for b in receiver.bodies()] == [1, 2, 3, 4]


async def test_timeout_is_retried_then_failed(gateway_factory: Any, tmp_path: Any) -> None:
    calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        await asyncio.sleep(2)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/outbound", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        cfg = base_config(tmp_path / "db.sqlite", f"http://127.0.0.1:{port}/outbound")
        cfg["outbox"] |= {"send_timeout": 0.2, "max_attempts": 3}
        _, client = await gateway_factory(cfg)
        conv_id, msg_id = await _reply(client, "slow")
        msg = await wait_for(lambda: client.message_with_status(conv_id, msg_id, "failed"))
        assert msg["reason"] == "gave up after 3 attempts: send timed out"
        assert len(calls) == 3
    finally:
        await runner.cleanup()


async def test_retry_horizon_ends_retries_without_an_attempt_count(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any
) -> None:
    """No `max_attempts`: a provider outage longer than a count of quick retries does not
    fail the reply; the channel's horizon does, with a last attempt at the horizon."""
    receiver.script = [503] * 1000
    cfg = base_config(tmp_path / "db.sqlite", receiver.url)
    cfg["outbox"] = {"base_delay": 0.05, "max_delay": 0.1, "retry_horizon": 60}
    cfg["channels"][0]["outbox"] = {"retry_horizon": "1.5s"}  # the channel's own wins
    _, client = await gateway_factory(cfg)
    started = time.monotonic()
    conv_id, msg_id = await _reply(client, "outage")
    msg = await wait_for(lambda: client.message_with_status(conv_id, msg_id, "failed"), timeout=10)
    took = time.monotonic() - started
    assert 1.4 <= took < 5, took
    assert "h: HTTP 503" in msg["reason"] and msg["reason"].startswith("gave up after")
    assert len(receiver.requests) > 5  # kept trying for the whole horizon


async def test_attempts_are_counted_across_restarts(
    gateway_factory: Any, receiver: Receiver, tmp_path: Any
) -> None:
    receiver.script = [503] * 1000
    cfg = base_config(tmp_path / "db.sqlite", receiver.url)
    cfg["outbox"] |= {"max_attempts": 100}
    gw, client = await gateway_factory(cfg)
    conv_id, msg_id = await _reply(client, "restart")
    await wait_for(lambda: len(receiver.requests) >= 2)
    await gw.stop()
    before = [b["attempt"] for b in receiver.bodies()]
    receiver.script = []
    _, client = await gateway_factory(cfg)
    await wait_for(lambda: client.message_with_status(conv_id, msg_id, "sent"))
    after = [b["attempt"] for b in receiver.bodies()]
    assert after == list(range(1, len(after) + 1)) and len(after) > len(before)


async def test_daemon_fails_a_400_within_5_seconds_at_the_default_log_level(
    tmp_path: Path, receiver: Receiver
) -> None:
    """As a user runs it: `switchboard run` with no log flags, an endpoint answering 400."""
    receiver.script = [400] * 10
    port = free_port()
    cfg = base_config(tmp_path / "gw.db", receiver.url)
    cfg["server"]["port"] = port
    del cfg["outbox"]  # the shipped defaults
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {CHANNEL}"}
            async with http.post(
                f"{base}/v1/channels/api/messages",
                json={"external_id": "d-400", "from": {"id": "c-400"}, "text": "hi"},
                headers=auth,
            ) as r:
                conv_id = (await r.json())["conversation_id"]
            admin = {"Authorization": f"Bearer {ADMIN}"}
            started = time.monotonic()
            async with http.post(
                f"{base}/v1/conversations/{conv_id}/messages",
                json={"text": "reply", "agent": "alice"},
                headers=admin,
            ) as r:
                assert r.status == 202
                msg_id = (await r.json())["id"]

            async def failed() -> dict[str, Any] | None:
                async with http.get(f"{base}/v1/conversations/{conv_id}", headers=admin) as r:
                    conv = await r.json()
                return next(
                    (m for m in conv["messages"] if m["id"] == msg_id and m["status"] == "failed"),
                    None,
                )

            msg = await wait_for(failed, timeout=5)
            assert time.monotonic() - started < 5
            assert "HTTP 400" in msg["reason"]
            assert len(receiver.requests) == 1
    finally:
        assert daemon.terminate() == 0
    assert "Logging error" not in (tmp_path / "daemon.log").read_text()
