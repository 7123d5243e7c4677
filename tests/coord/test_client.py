"""The key names and the shared Redis client: hash tags, health, reconnects."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from redis.exceptions import RedisError

from connectors.base import Choice, Identity, OutboundMessage, Prompt
from gateway.coord.client import RedisClient
from gateway.coord.fanout import decode_message, encode_message
from gateway.coord.keys import Keys
from tests.redisserver import own_server


def slot_tag(key: str) -> str:
    """The part Redis Cluster hashes (CLUSTER KEYSLOT rules)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def test_every_key_is_hash_tagged_with_the_prefix() -> None:
    keys = Keys("acme")
    names = [
        keys.events_channel,
        keys.deliver_channel("i1"),
        keys.instance("i1"),
        keys.socket("chat", "visitor-{1}"),
        keys.lease("imap:support"),
        keys.fence("imap:support"),
        keys.rate("telegram:bot"),
        keys.presence("alice"),
        keys.key("any", "thing"),
    ]
    assert all(slot_tag(name) == "acme" for name in names)
    assert keys.lease("imap:support") == "{acme}:lease:imap:support"
    assert len(set(names)) == len(names)


def test_bad_prefixes_and_parts_are_refused() -> None:
    for bad in ("", "a{b", "a}b", "with space", "x" * 65):
        with pytest.raises(ValueError):
            Keys(bad)
    with pytest.raises(ValueError):
        Keys("ok").key("a", "")


async def test_commands_work_through_the_shared_client(redis_url: str) -> None:
    client = RedisClient(redis_url, Keys("t"))
    await client.start()
    try:
        assert client.healthy
        await client.redis.set(client.keys.key("x"), "1")
        assert await client.redis.get(client.keys.key("x")) == "1"
    finally:
        await client.stop()


@pytest.mark.timeout(60)
async def test_health_follows_the_server_and_logs_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = own_server()
    client = RedisClient(server.url, timeout=0.5, interval=0.1, log_every=0.6)
    changes: list[bool] = []
    client.on_change(changes.append)
    try:
        await client.start()
        assert client.healthy
        with caplog.at_level(logging.INFO, logger="switchboard.coord"):
            server.kill()
            # A failed command says so at once; the loop keeps checking.
            with pytest.raises(RedisError):
                await client.redis.ping()
            client.report_failure()
            assert not client.healthy
            await asyncio.sleep(1.5)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            # One at the transition, then one per log_every: not one per ping (15 pings).
            assert 2 <= len(warnings) <= 4, [r.getMessage() for r in warnings]
            server.start()
            assert await client.wait_healthy(10)
            assert await client.redis.ping()
        infos = [r for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(infos) == 1
        assert changes == [False, True]
    finally:
        await client.stop()
        server.close()


async def test_a_gateway_starts_while_redis_is_down() -> None:
    server = own_server()
    url = server.url
    server.kill()
    client = RedisClient(url, timeout=0.5, interval=0.1)
    try:
        await client.start()
        assert not client.healthy
        server.start()
        assert await client.wait_healthy(10)
    finally:
        await client.stop()
        server.close()


def test_an_outbound_message_survives_the_trip_to_another_instance() -> None:
    """A survey reply handed to the instance holding the socket keeps its buttons."""
    message = OutboundMessage(
        id="msg_1",
        conversation_id="cv_1",
        to=Identity("webchat", "v_1"),
        text="How did we do?",
        sender_name="Alice",
        attempt=2,
        metadata={"k": "v"},
        prompt=Prompt(
            id="sv_1",
            choices=[Choice("1", "Bad"), Choice("5", "Great", "https://x.example/5")],
            comment=True,
            texts={"thanks": "Danke"},
        ),
    )
    wire = json.loads(json.dumps(encode_message(message)))
    assert decode_message(wire) == message
