"""Inbound the gateway cannot take is kept, shown and re-submittable — never retried for ever.

Through the whole running gateway with Twilio's real webhook signatures: a message the core
refuses, and one that keeps failing inside the core (a bug), both end in quarantine with
Twilio answered 200; the channel reads `degraded` on /readyz; an admin lists, downloads,
re-submits (after the fix) or dismisses them, through the API and `switchboard quarantine`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from connectors.base import InboundMessage
from gateway.cli import main as cli
from gateway.metrics import METRICS
from tests.gateway.conftest import ADMIN, Client, agent_token, gateway_factory, wait_for
from tests.standins.twilio import CHANNEL_NUMBER, CUSTOMER_NUMBER, TwilioStandin
from tests.twilio.test_twilio_gateway import (
    EMPTY_TWIML,
    SMS_INBOUND,
    all_conversations,
    start,
    twilio_config,
)

__all__ = ["gateway_factory"]


async def readyz(client: Client) -> dict[str, Any]:
    """/readyz once every channel has started (they start in the background)."""

    async def started() -> dict[str, Any] | None:
        _, body = await client.call("GET", "/readyz", token=None)
        return None if "starting" in body["channels"].values() else dict(body)

    body = await wait_for(started)
    assert body["ready"], body
    return dict(body)


async def test_refused_message_is_quarantined_and_twilio_answered(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin
) -> None:
    cfg, _ = twilio_config(tmp_path, twilio)
    gw, client = await gateway_factory(cfg)
    url = client.base + SMS_INBOUND
    kept_before = METRICS.quarantined.labels("sms")._value.get()
    assert (await readyz(client))["channels"]["sms"] == "running"

    # Signed by Twilio, but From is no phone number the core can key a contact on.
    params = twilio.inbound_params("not-a-number", CHANNEL_NUMBER, "hello?")
    status, ctype, text = await twilio.post_webhook(client.http, url, params)
    assert (status, ctype, text) == (200, "text/xml", EMPTY_TWIML)  # no redelivery loop
    assert await all_conversations(client) == []

    _, page = await client.call("GET", "/v1/quarantine")
    [item] = page["items"]
    assert item["channel"] == "sms" and item["status"] == "new"
    assert item["external_id"] == params["MessageSid"]
    assert item["reason"].startswith("refused:")
    assert (await readyz(client))["channels"]["sms"] == "degraded: 1 quarantined"
    events = [e for e in await gw.store.events_since(0, 100) if e.type == "message.quarantined"]
    assert [e.data["quarantine"]["id"] for e in events] == [item["id"]]

    # Agents cannot see it; an admin can, with the message as it was normalised.
    status, _ = await client.call("GET", "/v1/quarantine", token=agent_token("alice"))
    assert status == 403
    async with client.http.get(
        f"{client.base}/v1/quarantine/{item['id']}/raw",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as resp:
        assert resp.status == 200
        kept = json.loads(await resp.read())
    assert kept["text"] == "hello?" and kept["external_id"] == params["MessageSid"]

    # Retrying without a fix keeps it, with the reason; dismissing clears the channel.
    status, again = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 422 and again["status"] == "new" and again["retries"] == 1
    assert again["reason"].startswith("retry failed:")
    status, done = await client.call("POST", f"/v1/quarantine/{item['id']}/dismiss")
    assert status == 200 and done["status"] == "dismissed"
    assert (await readyz(client))["channels"]["sms"] == "running"
    status, _ = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 409

    metrics = (await client.call("GET", "/metrics"))[1]
    assert f'switchboard_inbound_quarantined_total{{channel="sms"}} {kept_before + 1}' in metrics
    assert 'switchboard_quarantine_unreviewed{channel="sms"} 0.0' in metrics


async def test_a_message_that_keeps_failing_in_the_core_is_kept_then_resubmitted(
    gateway_factory: Any, tmp_path: Path, twilio: TwilioStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    url = client.base + SMS_INBOUND
    from gateway.ingest import Ingestor

    real = Ingestor._message

    async def broken(self: Ingestor, channel: Any, msg: InboundMessage, *rest: Any) -> Any:
        if "crash" in msg.text:
            raise KeyError("a bug in the core")
        return await real(self, channel, msg, *rest)

    monkeypatch.setattr(Ingestor, "_message", broken)
    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "this will crash the core")
    # Twilio is asked to try again twice; the third failure keeps it and answers 200.
    statuses = [(await twilio.post_webhook(client.http, url, params))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    _, page = await client.call("GET", "/v1/quarantine?status=new")
    [item] = page["items"]
    assert item["reason"] == "failed 3 times in the gateway: KeyError: 'a bug in the core'"
    # The raw download is the webhook as Twilio sent it (its form parameters).
    async with client.http.get(
        f"{client.base}/v1/quarantine/{item['id']}/raw",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as resp:
        assert resp.headers["Content-Type"].startswith("application/vnd.switchboard.inbound+json")
        assert json.loads(await resp.read())["text"] == "this will crash the core"

    # Other messages still flow meanwhile.
    ok = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "a normal question")
    assert (await twilio.post_webhook(client.http, url, ok))[0] == 200

    monkeypatch.setattr(Ingestor, "_message", real)  # the fix is deployed
    status, retried = await client.call("POST", f"/v1/quarantine/{item['id']}/retry")
    assert status == 200 and retried["status"] == "retried" and retried["message_id"]
    convs = await wait_for(lambda: client.conversations_of(f"phone:{CUSTOMER_NUMBER}"))
    texts = {m["text"] for m in (await client.conversation(convs[0]["id"]))["messages"]}
    assert texts == {"this will crash the core", "a normal question"}
    assert (await readyz(client))["channels"]["sms"] == "running"


async def test_cli_lists_downloads_and_retries(
    gateway_factory: Any,
    tmp_path: Path,
    twilio: TwilioStandin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await start(gateway_factory, tmp_path, twilio)
    params = twilio.inbound_params(CUSTOMER_NUMBER, CHANNEL_NUMBER, "hi")
    params.pop("From")  # signed, unreadable: the connector keeps it as Twilio sent it
    assert (await twilio.post_webhook(client.http, client.base + SMS_INBOUND, params))[0] == 200
    common = ["--url", client.base, "--token", ADMIN]

    capsys.readouterr()
    assert await asyncio.to_thread(cli, ["quarantine", "list", *common]) == 0
    line = capsys.readouterr().out.strip()
    qid = line.split()[0]
    assert qid.startswith("q_") and "new" in line and "missing From" in line

    raw = tmp_path / "item.bin"
    assert await asyncio.to_thread(cli, ["quarantine", "raw", qid, "-o", str(raw), *common]) == 0
    assert dict(parse_qsl(raw.read_text(), keep_blank_values=True)) == params

    assert await asyncio.to_thread(cli, ["quarantine", "retry", qid, *common]) == 1
    assert "missing From" in capsys.readouterr().out
    assert await asyncio.to_thread(cli, ["quarantine", "dismiss", qid, *common]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli, ["quarantine", "list", *common]) == 0
    assert "nothing in quarantine" in capsys.readouterr().err
