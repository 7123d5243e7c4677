"""SIGTERM under load: the real `switchboard run` exits 0 within `server.shutdown_timeout`.

100 daemons, a few at a time, each under a short burst of customer messages and agent
replies to a slow receiver (so sends are in flight and the outbox is busy), get SIGTERM at
a random moment of the burst. Every one must exit 0 in time: a daemon that hangs in its
shutdown is what an operator would notice (a stuck deploy, a restart that never ends).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.conftest import ADMIN, CHANNEL, base_config, config_text, wait_for
from tests.gateway.test_e2e_daemon import free_port

ROUNDS = int(os.environ.get("SIGTERM_ROUNDS", "100"))
PARALLEL = 4
SHUTDOWN_TIMEOUT = 3.0
MARGIN = 2.0  # the interpreter's own exit after the gateway stopped, on a busy machine
ROOT = Path(__file__).resolve().parents[2]


class SlowReceiver:
    """An `outbound_url` that answers every reply after a short random delay."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(self.rng.uniform(0.0, 0.01))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/outbound", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/outbound"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _load(base: str, http: aiohttp.ClientSession, worker: int) -> None:
    """Customer messages, each answered by an agent reply, as fast as the gateway takes
    them: inbound requests in flight, and replies queued and in flight to the receiver."""
    for n in itertools.count():
        try:
            async with http.post(
                f"{base}/v1/channels/api/messages",
                headers={"Authorization": f"Bearer {CHANNEL}"},
                json={
                    "external_id": f"w{worker}-{n}",
                    "text": "hello",
                    "from": {"id": f"c{n % 7}"},
                },
            ) as r:
                if r.status != 202:
                    continue
                conv_id = (await r.json())["conversation_id"]
            async with http.post(
                f"{base}/v1/conversations/{conv_id}/messages",
                headers={"Authorization": f"Bearer {ADMIN}"},
                json={"text": f"reply {n}", "agent": "alice"},
            ) as r:
                await r.read()
        except (aiohttp.ClientError, OSError, ValueError, KeyError):
            await asyncio.sleep(0.01)  # the daemon is going away; keep trying until told


async def _one_round(
    n: int, tmp_path: Path, receiver: SlowReceiver, rng: random.Random, took: list[float]
) -> str:
    """Start a daemon, load it, SIGTERM it; an empty string, or what went wrong."""
    port = free_port()
    cfg = base_config(tmp_path / f"gw{n}.db", receiver.url)
    cfg["server"]["port"] = port
    cfg["server"]["shutdown_timeout"] = SHUTDOWN_TIMEOUT
    cfg["outbox"] = {
        "base_delay": 0.05,
        "max_delay": 0.2,
        "concurrency": 16,
        "send_timeout": 5,
    }
    config = tmp_path / f"gw{n}.yaml"
    config.write_text(config_text(cfg))
    log = tmp_path / f"gw{n}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "gateway.cli", "run", "-c", str(config)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    async with http.get(f"{base}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout=30)
            load = [asyncio.create_task(_load(base, http, w)) for w in range(4)]
            await asyncio.sleep(rng.uniform(0.05, 0.5))  # SIGTERM at a random moment
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            try:
                code = await asyncio.wait_for(proc.wait(), SHUTDOWN_TIMEOUT + MARGIN)
                took.append(time.monotonic() - sent)
            except TimeoutError:
                return (
                    f"daemon {n}: still running {SHUTDOWN_TIMEOUT + MARGIN:.0f}s after SIGTERM; "
                    f"log tail:\n{log.read_text()[-1500:]}"
                )
            finally:
                for task in load:
                    task.cancel()
                await asyncio.gather(*load, return_exceptions=True)
            if code != 0:
                return (
                    f"daemon {n}: exit {code} after SIGTERM; log tail:\n{log.read_text()[-1500:]}"
                )
            return ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# 100 daemons started and stopped, four at a time: the budget is the daemons' start-up CPU
# (about 2.5 s each on one core), not a hang; each stop is still held to its deadline.
@pytest.mark.timeout(300)
async def test_sigterm_under_load_always_exits_0_in_time(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("SIGTERM_SEED", "8"))
    receiver = SlowReceiver(rng)
    await receiver.start()
    rounds = iter(range(ROUNDS))
    failures: list[str] = []
    took: list[float] = []

    async def runner() -> None:
        for n in rounds:
            if failure := await _one_round(n, tmp_path, receiver, rng, took):
                failures.append(failure)

    try:
        await asyncio.gather(*(runner() for _ in range(PARALLEL)))
    finally:
        await receiver.stop()
    print(f"{ROUNDS} SIGTERMs; slowest exit {max(took, default=0):.2f}s after the signal")
    assert not failures, f"{len(failures)} of {ROUNDS} daemons did not stop cleanly:\n" + (
        "\n".join(failures[:3])
    )
