"""Web chat benchmark: N widget WebSockets held by one gateway process.

Measures, in one run, against two servers started as subprocesses on this machine:
- a bare aiohttp WebSocket server (reads the hello, answers one JSON frame, then idles):
  resident memory per held connection;
- the gateway (`switchboard run`, SQLite store, one `webchat` channel): resident memory per
  held widget socket (hello, signed token, welcome with history and availability), and,
  with all N connected, the delivery latency of agent replies: from the agent's
  `POST /v1/conversations/{id}/messages` to the frame arriving on the visitor's socket
  (through the store, the outbox and the connector), p50/p99.
Prints the memory ratio (gateway / bare; target <= 2x) and the p99 (target < 100 ms).
Memory is VmRSS from /proc/PID/status, read after connecting a few warm-up sockets and
again once all N are open.

    python -m bench.webchat --connections 10000 --replies 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token"
SECRET = "bench-webchat-secret-0123456789"
WARMUP = 50

BARE = r"""
import asyncio, json, sys
from aiohttp import web, WSMsgType

async def main(port):
    async def handle(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = await ws.receive()
        await ws.send_str(json.dumps({"type": "welcome", "echo": hello.data[:64]}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    app.router.add_get("/healthz", lambda r: web.json_response({"ok": True}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def gateway_config(port: int, db: Path) -> dict[str, Any]:
    origin = f"http://127.0.0.1:{port}"
    return {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": 5},
        "store": {"path": str(db)},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "token": ADMIN}]},
        "agents": [
            {
                "id": "bench",
                "name": "Bench Agent",
                "capacity": {"default": 100000},
                "queues": ["general"],
                "presence": "online",
            }
        ],
        "channels": [
            {
                "name": "webchat",
                "type": "webchat",
                "secret": SECRET,
                "allowed_origins": [origin],
                "max_sockets_per_visitor": 10,
            }
        ],
        "routing": {
            "queues": [{"name": "general", "strategy": "least_busy"}],
            "default": {"queue": "general"},
        },
        "outbox": {"base_delay": 0.05, "max_delay": 1.0, "concurrency": 16},
    }


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout} s")


class Visitor:
    __slots__ = ("frames", "reader", "token", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.token: str | None = None
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        # Reading keeps answering the server's heartbeat pings.
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.put_nowait(json.loads(msg.data))


async def open_many(
    http: aiohttp.ClientSession, url: str, origin: str, n: int, parallel: int = 200
) -> list[Visitor]:
    sem = asyncio.Semaphore(parallel)
    out: list[Visitor] = []

    async def one() -> None:
        async with sem:
            ws = await http.ws_connect(url, origin=origin, autoping=True, max_msg_size=1 << 20)
            v = Visitor(ws)
            await ws.send_str(json.dumps({"type": "hello", "token": None}))
            msg = await ws.receive(timeout=60)
            welcome = json.loads(msg.data)
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"unexpected first frame: {welcome}")
            v.token = welcome.get("token")
            v.reader = asyncio.create_task(v.read())
            out.append(v)

    await asyncio.gather(*(one() for _ in range(n)))
    return out


async def close_all(visitors: list[Visitor]) -> None:
    for v in visitors:
        if v.reader:
            v.reader.cancel()
    await asyncio.gather(*(v.ws.close() for v in visitors), return_exceptions=True)


async def hold(
    name: str, pid: int, url: str, origin: str, n: int, http: aiohttp.ClientSession
) -> tuple[dict[str, Any], list[Visitor]]:
    warm = await open_many(http, url, origin, WARMUP)
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    started = time.monotonic()
    visitors = await open_many(http, url, origin, n)
    took = time.monotonic() - started
    await asyncio.sleep(2.0)
    after = rss_kib(pid)
    per = (after - before) / n
    print(
        f"  {name:<22} RSS {before / 1024:7.1f} MiB -> {after / 1024:7.1f} MiB"
        f"   {per:6.2f} KiB/connection   ({n / took:,.0f} connects/s)",
        flush=True,
    )
    return {"before": before, "after": after, "per": per}, warm + visitors


async def measure_replies(
    http: aiohttp.ClientSession, base: str, visitors: list[Visitor], replies: int
) -> list[float]:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    step = max(1, len(visitors) // replies)
    chosen = visitors[::step][:replies]
    convs: list[str] = []
    for i, v in enumerate(chosen):
        await v.ws.send_str(json.dumps({"type": "message", "client_id": f"b{i}", "text": "hello"}))
        while True:
            frame = await asyncio.wait_for(v.frames.get(), 30)
            if frame["type"] == "ack":
                convs.append(frame["conversation_id"])
                break
    await asyncio.sleep(1.0)  # let routing settle
    latencies: list[float] = []
    for v, conv in zip(chosen, convs, strict=True):
        text = f"reply to {conv}"
        t0 = time.perf_counter()
        async with http.post(
            f"{base}/v1/conversations/{conv}/messages", json={"text": text}, headers=auth
        ) as resp:
            if resp.status != 202:
                raise RuntimeError(f"reply refused: {resp.status} {await resp.text()}")
        while True:
            frame = await asyncio.wait_for(v.frames.get(), 30)
            if frame.get("type") == "message" and frame.get("text") == text:
                latencies.append(time.perf_counter() - t0)
                break
    return latencies


async def run(n: int, replies: int) -> None:
    limit = raise_nofile(n * 2 + 1000)
    if limit < n + 500:
        sys.exit(f"the open-files limit is {limit}: too low for {n} connections")
    tmp = Path(tempfile.mkdtemp(prefix="bench-webchat-"))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    print(f"webchat benchmark: {n:,} WebSockets held by one process, {replies} replies timed")
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        # 1. The bare aiohttp WebSocket server.
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(port)])
        try:
            await wait_ready(f"http://127.0.0.1:{port}/healthz", bare)
            origin = f"http://127.0.0.1:{port}"
            bare_mem, held = await hold("bare aiohttp", bare.pid, f"{origin}/ws", origin, n, http)
            await close_all(held)
        finally:
            bare.terminate()
            bare.wait(10)

        # 2. The gateway.
        port = free_port()
        cfg = tmp / "gateway.yaml"
        cfg.write_text(yaml.safe_dump(gateway_config(port, tmp / "db.sqlite")))
        exe = Path(sys.executable).with_name("switchboard")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]
        log = (tmp / "gateway.log").open("wb")
        env = dict(os.environ, SWITCHBOARD_LOG_LEVEL="WARNING")
        gw = subprocess.Popen([*cmd, "run", "-c", str(cfg)], stderr=log, stdout=log, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(f"{base}/healthz", gw)
            gw_mem, held = await hold(
                "switchboard gateway", gw.pid, f"{base}/webchat/webchat/ws", base, n, http
            )
            latencies = await measure_replies(http, base, held, replies)
            await close_all(held)
        finally:
            gw.terminate()
            gw.wait(30)
            log.close()

    ratio = gw_mem["per"] / bare_mem["per"] if bare_mem["per"] > 0 else float("inf")
    p99 = pct(latencies, 0.99)
    print(
        f"  memory ratio gateway/bare: {ratio:.2f}x (target <= 2x)"
        f" {'OK' if ratio <= 2 else 'OVER TARGET'}"
    )
    print(
        f"  reply -> visitor with {n:,} connected ({len(latencies)} replies, one at a time):"
        f" p50 {pct(latencies, 0.5):.1f} ms, p90 {pct(latencies, 0.9):.1f} ms,"
        f" p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        f" (target p99 < 100 ms) {'OK' if p99 < 100 else 'OVER TARGET'}"
    )
    print(f"  gateway log: {tmp / 'gateway.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-n", type=int, default=10_000)
    parser.add_argument("--replies", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.connections, args.replies))


if __name__ == "__main__":
    main()
