"""Outbound requests go only where they should (SSRF): configured endpoints are http(s),
and reach loopback, private or link-local addresses — checked after DNS resolution, at
request time — only with `allow_private_networks: true`; Twilio media is fetched only
from Twilio's own hosts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from gateway.config import ConfigError, load_config_text
from tests.gateway.conftest import (
    ADMIN,
    SECRET,
    Receiver,
    agent_token,
    base_config,
    config_text,
    gateway_factory,
    wait_for,
)
from tests.standins.server import free_port
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, TwilioStandin

__all__ = ["gateway_factory"]


def problems_of(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config_text(config_text(cfg))
    return [str(p) for p in err.value.problems]


def test_endpoints_must_be_http_and_public_unless_allowed(tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite", outbound_url="http://169.254.169.254/latest")
    cfg["channels"][0].pop("allow_private_networks", None)
    cfg["webhooks"] = [
        {"url": url, "secret": SECRET}
        for url in (
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_FLUSHALL",
            "not a url",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9090/hook",
            "http://10.1.2.3/hook",
            "https://helpdesk.example.com/hook",  # fine
        )
    ]
    found = problems_of(cfg)
    expected = {
        "webhooks[0].url": "http:// or https://",
        "webhooks[1].url": "http:// or https://",
        "webhooks[2].url": "http:// or https://",
        "webhooks[3].url": "link-local",
        "webhooks[4].url": "loopback",
        "webhooks[5].url": "private",
        "channels[0].outbound_url": "link-local",
    }
    for path, words in expected.items():
        assert any(p.startswith(path) and words in p for p in found), (path, found)
    assert not any(p.startswith("webhooks[6]") for p in found), found
    assert all("allow_private_networks" in p for p in found if "http://" not in p), found

    # With the flag, private targets are the operator's choice; other schemes never are.
    cfg["channels"][0]["allow_private_networks"] = True
    for hook in cfg["webhooks"]:
        hook["allow_private_networks"] = True
    found = problems_of(cfg)
    assert sorted(p.split(" ")[0] for p in found) == [
        "webhooks[0].url",
        "webhooks[1].url",
        "webhooks[2].url",
    ], found
    cfg["webhooks"] = cfg["webhooks"][3:]
    load_config_text(config_text(cfg))


def test_check_reports_a_name_that_resolves_to_a_private_address(tmp_path: Path) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [{"url": "http://localhost:9091/hook", "secret": SECRET}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1, res
    assert "webhooks[0].url" in res.stderr and "127.0.0.1" in res.stderr, res.stderr
    assert "allow_private_networks" in res.stderr and "Traceback" not in res.stderr
    cfg["webhooks"][0]["allow_private_networks"] = True
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


@pytest.fixture
async def second_receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_a_name_resolving_to_loopback_is_refused_at_request_time(
    gateway_factory: Any, tmp_path: Path, receiver: Receiver, second_receiver: Receiver
) -> None:
    # "localhost" passes the config check as written (a name); what it resolves to, at the
    # moment of each request, is what counts.
    sneaky = receiver.url.replace("127.0.0.1", "localhost")
    cfg = base_config(tmp_path / "db.sqlite", outbound_url=sneaky)
    cfg["channels"][0].pop("allow_private_networks", None)
    cfg["webhooks"] = [
        {"url": sneaky, "secret": SECRET},
        {"url": second_receiver.url, "secret": SECRET, "allow_private_networks": True},
    ]
    _, client = await gateway_factory(cfg)
    status, body = await client.inbound("e1", "hello", sender="c1")
    assert status == 202, body
    conv = await wait_for(lambda: client.assigned(body["conversation_id"]))
    status, reply = await client.call(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        token=agent_token(conv["assignee"]),
        json={"text": "Hi there"},
    )
    assert status == 202, reply
    failed = await wait_for(lambda: client.message_with_status(conv["id"], reply["id"], "failed"))
    assert "non-public" in failed["reason"] and "allow_private_networks" in failed["reason"]
    # the allowed endpoint got every event up to the failure; the refused one nothing
    await wait_for(
        lambda: any(b["type"] == "message.failed" for b in second_receiver.bodies()), timeout=10
    )
    assert receiver.requests == []


async def test_twilio_media_is_fetched_only_from_twilio(
    gateway_factory: Any, tmp_path: Path
) -> None:
    twilio = TwilioStandin()
    await twilio.start()
    hits: list[str] = []

    async def metadata(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"AWS_SECRET_ACCESS_KEY=hunter2", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", metadata)
    runner = web.AppRunner(app)
    await runner.setup()
    inner_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", inner_port).start()
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cfg = base_config(tmp_path / "db.sqlite")
        cfg["server"]["port"] = port
        cfg["channels"].append(
            {
                "name": "sms",
                "type": "twilio_sms",
                "account_sid": twilio.account_sid,
                "auth_token": twilio.auth_token,
                "api_base_url": twilio.url,
                "webhook_base_url": base,
                "from_number": CHANNEL_NUMBER,
                "request_timeout": 3,
            }
        )
        _, client = await gateway_factory(cfg)
        photo = twilio.add_media(b"\xff\xd8photo", "image/jpeg")
        inner = f"http://127.0.0.1:{inner_port}/latest/meta-data/iam/credentials"
        params = twilio.inbound_params(
            CUSTOMER_NUMBER,
            CHANNEL_NUMBER,
            "see attached",
            media=[(photo, "image/jpeg"), (inner, "text/plain")],
        )
        status, _, text = await twilio.post_webhook(
            client.http, base + "/channels/sms/twilio/inbound", params
        )
        assert status == 200, text
        convs = await wait_for(lambda: client.conversations_of(f"phone:{CUSTOMER_NUMBER}"))
        (message,) = (await client.conversation(convs[0]["id"]))["messages"]
        fetched, kept = message["attachments"]
        assert fetched.get("blob") and kept.get("url") == inner
        assert not kept.get("blob"), kept  # nothing an agent could download
        assert hits == []
        async with client.http.get(
            f"{client.base}/v1/blobs/{fetched['blob']}",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as resp:
            assert resp.status == 200 and await resp.read() == b"\xff\xd8photo"
    finally:
        await runner.cleanup()
        await twilio.close()
