"""The five newcomer steps against the real `switchboard run` process, with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import standardwebhooks

from tests.gateway.conftest import (
    ADMIN,
    CHANNEL,
    SECRET,
    Receiver,
    agent_token,
    base_config,
    config_text,
    wait_for,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """`switchboard run` as a child process; `start()` returns once /healthz answers, within
    `start_timeout` seconds (generous: a loaded 2-core machine has taken 18 s to start one,
    and several starting at once take longer). `preexec_fn` runs in the child before exec
    (e.g. to lower its open-file limit)."""

    def __init__(
        self,
        config: Path,
        port: int,
        log: Path,
        preexec_fn: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.config, self.port, self.log = config, port, log
        self.start_timeout = start_timeout
        self.preexec_fn = preexec_fn
        self.env = env or {}  # extra environment (e.g. libfaketime for a movable clock)
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            env={
                **os.environ,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                **self.env,
            },
            preexec_fn=self.preexec_fn,
        )
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            try:
                await wait_for(up, timeout=self.start_timeout, interval=0.1)
            except BaseException:
                # A daemon that did not come up must not outlive its test.
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(10)
                raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


async def test_newcomer_flow_with_sigkill_and_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    outbound_port = free_port()
    port = free_port()
    cfg = base_config(tmp_path / "gw.db", f"http://127.0.0.1:{outbound_port}/outbound")
    cfg["server"]["port"] = port
    # The replies must outlive the crash: retried until the endpoint is back, however long
    # the steps before the kill take (the suite's default gives up after 4 quick attempts).
    cfg["outbox"]["max_attempts"] = None
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {ADMIN}"}
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            # 2. Subscribe to the event stream before the customer writes.
            ws = await http.ws_connect(f"{base}/v1/events", headers=auth)
            # 1. A customer writes: 202 with the conversation id.
            async with http.post(
                f"{base}/v1/channels/api/messages",
                headers={"Authorization": f"Bearer {CHANNEL}"},
                json={
                    "external_id": "ext-1",
                    "text": "I need a refund for invoice 42",
                    "from": {"id": "cust-9"},
                },
            ) as r:
                assert r.status == 202
                conv_id = (await r.json())["conversation_id"]
            seen: dict[str, dict[str, Any]] = {}
            while "conversation.assigned" not in seen:
                msg = await asyncio.wait_for(ws.receive(), 10)
                event = json.loads(msg.data)
                seen[event["type"]] = event
            assert {"message.received", "conversation.created", "conversation.assigned"} <= set(
                seen
            )
            assigned = seen["conversation.assigned"]["data"]
            assert assigned["conversation_id"] == conv_id and assigned["agent"] == "alice"
            assert assigned["rule"] == "billing"
            assert any("alice chosen by skills" in r for r in assigned["reasons"])
            last_id = seen["conversation.assigned"]["id"]
            await ws.close()

            # 3. The agent replies while the customer's endpoint is down: queued, not lost.
            replies = []
            for i in range(3):
                async with http.post(
                    f"{base}/v1/conversations/{conv_id}/messages",
                    headers={"Authorization": f"Bearer {agent_token('alice')}"},
                    json={"text": f"reply {i}"},
                ) as r:
                    assert r.status == 202
                    replies.append((await r.json())["id"])
            # More customer messages acknowledged just before the crash.
            acked = []
            for i in range(20):
                async with http.post(
                    f"{base}/v1/channels/api/messages",
                    headers={"Authorization": f"Bearer {CHANNEL}"},
                    json={
                        "external_id": f"burst-{i}",
                        "text": f"message {i}",
                        "from": {"id": f"c{i}"},
                    },
                ) as r:
                    assert r.status == 202
                    acked.append((await r.json())["message_id"])

        # 5. SIGKILL at any moment, then start again.
        daemon.kill()
        await receiver.start(outbound_port)
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            # 4. Every queued reply is delivered, signed, exactly once.
            async def all_sent() -> bool:
                # `sent` is recorded only once the receiver answered: no attempt follows it
                async with http.get(f"{base}/v1/conversations/{conv_id}", headers=auth) as r:
                    messages = (await r.json())["messages"]
                return all(m["status"] == "sent" for m in messages if m["id"] in replies)

            await wait_for(all_sent, timeout=20)
            ids = [h["webhook-id"] for h, _ in receiver.requests]
            assert sorted(ids) == sorted(replies), "each reply delivered once"
            for headers, raw in receiver.requests:
                assert (
                    standardwebhooks.Webhook(SECRET).verify(raw, headers)["to"]["address"]
                    == "cust-9"
                )
            # Every acknowledged message is still there.
            stored = set()
            cursor = None
            while True:
                url = f"{base}/v1/conversations?limit=100" + (f"&cursor={cursor}" if cursor else "")
                async with http.get(url, headers=auth) as r:
                    page = await r.json()
                for conv in page["conversations"]:
                    async with http.get(f"{base}/v1/conversations/{conv['id']}", headers=auth) as r:
                        stored |= {m["id"] for m in (await r.json())["messages"]}
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert set(acked) <= stored and set(replies) <= stored
            # A redelivery after the restart is still recognised.
            async with http.post(
                f"{base}/v1/channels/api/messages",
                headers={"Authorization": f"Bearer {CHANNEL}"},
                json={"external_id": "burst-3", "text": "message 3", "from": {"id": "c3"}},
            ) as r:
                assert (await r.json()) | {} and (await r.json())["message_id"] == acked[3]
            # The event stream resumes where the client left off.
            async with http.get(
                f"{base}/v1/events?since={last_id}", headers=auth | {"Accept": "text/event-stream"}
            ) as r:
                chunk = b""
                while b"message.sent" not in chunk:
                    chunk += await asyncio.wait_for(r.content.readany(), 10)
                first_id = int(chunk.split(b"id: ", 1)[1].split(b"\n", 1)[0])
                assert first_id == last_id + 1
        # Graceful stop exits 0.
        assert daemon.terminate() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
        await receiver.stop()
