"""Ingest benchmark: N messages through the `api` channel at concurrency C.

Measures, in one run, against two servers started as subprocesses on this machine:
- the gateway (`switchboard run`, SQLite store): messages/s, and latency from the POST to
  the `conversation.assigned` event on the event stream (p50/p99);
- a bare aiohttp handler doing one aiosqlite INSERT (autocommit) per request (same WAL and
  synchronous settings): messages/s and POST latency;
then prints the throughput ratio (gateway / bare). A second phase offers a fixed rate
(default 1,000 messages/s, open loop) to the gateway and reports p50/p99 POST→assigned.

    python -m bench.ingest --messages 5000 --concurrency 50 --rate 1000

With `--wrk SECONDS` the throughput of both servers is measured with wrk (a C load
generator, so the client's own Python does not share the gateway's 2 cores), each POST a
new customer, back to back in the same run; the fixed-rate latency phase stays in Python
(it needs the event stream). wrk comes from Debian (`apt-get install -y wrk`); the bench
installs it when it is missing and it may (root), else it says so and stops.

    python -m bench.ingest --wrk 10 --concurrency 50 --rate 1000

With `--backlog N` it measures routing under backlog instead, in one run: the ingest rate
of a gateway whose agents take every conversation (the backlog stays empty), then of a
fresh gateway whose agents are all full (capacity 1 each) with N conversations waiting,
and prints the ratio (target >= 0.8).

    python -m bench.ingest --backlog 10000 --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
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
TOKEN = "bench-channel-token"
ADMIN = "bench-admin-token"

BARE = r"""
import asyncio, sys, aiosqlite
from aiohttp import web

async def main(port, path):
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("CREATE TABLE m (id TEXT PRIMARY KEY, body TEXT)")

    async def handle(request):
        body = await request.json()
        # Autocommit: the INSERT is its own durable transaction.
        await db.execute("INSERT INTO m VALUES (?, ?)", (body["external_id"], body["text"]))
        return web.json_response({"ok": True}, status=202)

    app = web.Application()
    app.router.add_post("/v1/channels/api/messages", handle)
    app.router.add_get("/healthz", lambda r: web.json_response({"ok": True}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


# Every request a new external id and a new customer (a new conversation, routed): wrk's
# threads each get their own prefix.
WRK_SCRIPT = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] .. "-" .. tid
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"external_id":"%s-%d","text":"hello %d","from":{"id":"%s-cust-%d"}}',
    prefix, counter, counter, prefix, counter)
  return wrk.format("POST", "/v1/channels/api/messages",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
""".replace("TOKEN", TOKEN)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is needed for --wrk: run `apt-get install -y wrk` (Debian) as root")


def run_wrk(
    wrk: str, port: int, seconds: float, concurrency: int, prefix: str, script: Path
) -> dict[str, Any]:
    """wrk against the inbound endpoint: requests/s, latency p50/p99, non-2xx answers."""
    out = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{concurrency}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/channels/api/messages",
            "--",
            prefix,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rate": float(rps.group(1)) if rps else float("nan"),
        "p50": ms("50"),
        "p99": ms("99"),
        "non2xx": int(bad.group(1)) if bad else 0,
        "errors": errors.group(0) if errors else "",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def gateway_config(port: int, db: Path, agents: int, capacity: int = 1_000_000) -> dict[str, Any]:
    ids = [f"agent{i}" for i in range(agents)]
    return {
        # One client address opens every connection: an open-loop client behind a stall
        # opens more than the default per-client cap of 100.
        "server": {"host": "127.0.0.1", "port": port, "max_connections_per_client": 10_000},
        "store": {"path": str(db)},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "token": ADMIN}]},
        "agents": [
            {
                "id": a,
                "name": a,
                "capacity": {"default": capacity},
                "queues": ["general"],
                "presence": "online",
            }
            for a in ids
        ],
        "channels": [{"name": "api", "type": "api", "inbound_token": TOKEN}],
        "routing": {
            "queues": [{"name": "general", "strategy": "least_busy"}],
            "default": {"queue": "general"},
        },
    }


async def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def load(
    port: int,
    n: int,
    concurrency: int,
    prefix: str,
    rate: float | None = None,
    watch_events: bool = False,
) -> dict[str, Any]:
    """Send n messages; closed loop at `concurrency`, or open loop at `rate` per second."""
    base = f"http://127.0.0.1:{port}"
    sent_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}
    conv_of: dict[str, str] = {}
    assigned_at: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=concurrency if rate is None else 0)
    async with aiohttp.ClientSession(connector=connector) as http:
        ws = None
        reader = None
        if watch_events:
            ws = await http.ws_connect(f"{base}/v1/events?access_token={ADMIN}", max_msg_size=0)

            async def read() -> None:
                assert ws is not None
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event["type"] == "conversation.assigned":
                        assigned_at[event["data"]["conversation_id"]] = time.perf_counter()

            reader = asyncio.create_task(read())

        async def one(i: int) -> None:
            ext = f"{prefix}-{i}"
            body = {"external_id": ext, "text": f"hello {i}", "from": {"id": f"{prefix}-cust-{i}"}}
            sent_at[ext] = time.perf_counter()
            async with http.post(
                f"{base}/v1/channels/api/messages",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as r:
                data = await r.json()
                if r.status != 202:
                    raise RuntimeError(f"HTTP {r.status}: {data}")
            acked_at[ext] = time.perf_counter()
            if "conversation_id" in data:
                conv_of[ext] = data["conversation_id"]

        started = time.perf_counter()
        if rate is None:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    await one(queue.get_nowait())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            for i in range(n):
                target = started + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        if watch_events:
            deadline = time.perf_counter() + 30
            while len(assigned_at) < len(conv_of) and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            if ws is not None:
                await ws.close()
            if reader is not None:
                reader.cancel()
    post = [acked_at[k] - sent_at[k] for k in acked_at]
    routed = [assigned_at[conv_of[k]] - sent_at[k] for k in conv_of if conv_of[k] in assigned_at]
    return {
        "rate": n / elapsed,
        "post_p50": pct(post, 0.50),
        "post_p99": pct(post, 0.99),
        "assigned_p50": pct(routed, 0.50),
        "assigned_p99": pct(routed, 0.99),
        "assigned": len(routed),
        "offered": rate,
        "elapsed": elapsed,
    }


async def serve(tmpdir: Path, name: str, cfg: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    config = tmpdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)], env=env
    )
    await wait_up(port, proc)
    return proc


async def waiting_and_load(port: int) -> tuple[int, int, int]:
    """(conversations open and unassigned, total load, total capacity) via the API."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"http://127.0.0.1:{port}/v1/agents") as r:
            agents = (await r.json())["agents"]
        waiting = 0
        cursor = None
        while True:
            url = f"http://127.0.0.1:{port}/v1/conversations?status=open&limit=500"
            async with http.get(url + (f"&cursor={cursor}" if cursor else "")) as r:
                page = await r.json()
            waiting += sum(c["assignee"] is None for c in page["conversations"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    load = sum(sum(a["load"].values()) for a in agents)
    capacity = sum(a["capacity"]["default"] for a in agents)
    return waiting, load, capacity


async def backlog_run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        port = free_port()
        empty = await serve(
            tmpdir, "empty", gateway_config(port, tmpdir / "e.db", args.agents), port
        )
        try:
            await load(port, 500, args.concurrency, "warm")
            e = await load(port, args.messages, args.concurrency, "run")
        finally:
            empty.terminate()
            empty.wait(20)
        port = free_port()
        cfg = gateway_config(port, tmpdir / "b.db", args.agents, capacity=1)
        full = await serve(tmpdir, "backlog", cfg, port)
        try:
            pre = await load(port, args.backlog + args.agents, args.concurrency, "pre")
            waiting, used, capacity = await waiting_and_load(port)
            b = await load(port, args.messages, args.concurrency, "run")
        finally:
            full.terminate()
            full.wait(20)
    print(
        f"# bench/ingest.py --backlog {args.backlog} --messages {args.messages}"
        f" --concurrency {args.concurrency} --agents {args.agents}"
    )
    print(
        f"empty backlog (every conversation assigned): {e['rate']:8.0f} msg/s"
        f"   POST p50 {e['post_p50']:6.1f} ms  p99 {e['post_p99']:6.1f} ms"
    )
    print(
        f"building the backlog ({args.backlog + args.agents} messages)   : {pre['rate']:8.0f} msg/s"
        f"   POST p50 {pre['post_p50']:6.1f} ms  p99 {pre['post_p99']:6.1f} ms"
    )
    print(
        f"{waiting} waiting, agents full ({used}/{capacity}) : {b['rate']:8.0f} msg/s"
        f"   POST p50 {b['post_p50']:6.1f} ms  p99 {b['post_p99']:6.1f} ms"
    )
    print(
        f"ratio backlog/empty                        : {b['rate'] / e['rate']:8.2f}   (target >= 0.8)"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--rate", type=float, default=1000.0, help="offered rate of the latency phase")
    ap.add_argument("--rate-seconds", type=float, default=5.0)
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument(
        "--backlog", type=int, default=0, help="measure ingest with this many waiting instead"
    )
    ap.add_argument(
        "--wrk",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="measure throughput with wrk for this long per server (instead of --messages)",
    )
    args = ap.parse_args()
    wrk = ensure_wrk() if args.wrk else None
    if args.backlog:
        await backlog_run(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        gw_port, bare_port = free_port(), free_port()
        config = tmpdir / "gateway.yaml"
        config.write_text(yaml.safe_dump(gateway_config(gw_port, tmpdir / "gw.db", args.agents)))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHBOARD_LOG_LEVEL": "WARNING"}
        gw = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)], env=env
        )
        bare = subprocess.Popen(
            [sys.executable, "-c", BARE, str(bare_port), str(tmpdir / "bare.db")]
        )
        try:
            await wait_up(gw_port, gw)
            await wait_up(bare_port, bare)
            # Warm-up, then measure both.
            await load(bare_port, 500, args.concurrency, "warm")
            await load(gw_port, 500, args.concurrency, "warm", watch_events=True)
            if wrk is not None:
                script = tmpdir / "post.lua"
                script.write_text(WRK_SCRIPT)
                b = run_wrk(wrk, bare_port, args.wrk, args.concurrency, "bare", script)
                g = run_wrk(wrk, gw_port, args.wrk, args.concurrency, "run", script)
                print_wrk(args, b, g)  # now: the latency phase below may not survive a busy host
            else:
                b = await load(bare_port, args.messages, args.concurrency, "bare")
                g = await load(gw_port, args.messages, args.concurrency, "run", watch_events=True)
            offered = int(args.rate * args.rate_seconds)
            try:
                fixed = await load(
                    gw_port, offered, args.concurrency, "rate", rate=args.rate, watch_events=True
                )
            except (aiohttp.ClientError, RuntimeError) as exc:
                if wrk is None:
                    raise
                print(
                    f"gateway at {args.rate:.0f} msg/s offered    : the latency phase failed: {exc!r}"
                )
                return
        finally:
            for proc in (gw, bare):
                proc.terminate()
                proc.wait(20)

    if wrk is not None:
        print(
            f"gateway at {args.rate:.0f} msg/s offered    : {fixed['rate']:8.0f} msg/s achieved  "
            f"POST→assigned p50 {fixed['assigned_p50']:6.1f} ms  p99 {fixed['assigned_p99']:6.1f} ms (target < 50)  "
            f"({fixed['assigned']}/{offered} assigned)"
        )
        return
    print(
        f"# bench/ingest.py --messages {args.messages} --concurrency {args.concurrency} --rate {args.rate:g}"
    )
    print(
        f"bare aiohttp + 1 SQLite insert : {b['rate']:8.0f} msg/s   POST p50 {b['post_p50']:6.1f} ms  p99 {b['post_p99']:6.1f} ms"
    )
    print(
        f"gateway (closed loop, C={args.concurrency:<3})  : {g['rate']:8.0f} msg/s   POST p50 {g['post_p50']:6.1f} ms  p99 {g['post_p99']:6.1f} ms"
        f"   POST→assigned p50 {g['assigned_p50']:6.1f} ms  p99 {g['assigned_p99']:6.1f} ms  ({g['assigned']} assigned)"
    )
    print(f"ratio gateway/bare             : {g['rate'] / b['rate']:8.2f}   (target >= 0.5)")
    print(
        f"gateway at {args.rate:.0f} msg/s offered    : {fixed['rate']:8.0f} msg/s achieved  "
        f"POST→assigned p50 {fixed['assigned_p50']:6.1f} ms  p99 {fixed['assigned_p99']:6.1f} ms (target < 50)  "
        f"({fixed['assigned']}/{offered} assigned)"
    )


def print_wrk(args: argparse.Namespace, b: dict[str, Any], g: dict[str, Any]) -> None:
    print(
        f"# bench/ingest.py --wrk {args.wrk:g} --concurrency {args.concurrency}"
        f" --rate {args.rate:g} --rate-seconds {args.rate_seconds:g}"
    )
    for label, r in (("bare aiohttp + 1 SQLite insert", b), ("gateway", g)):
        print(
            f"{label:<31}: {r['rate']:8.0f} msg/s   POST p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms"
            f"   (wrk -t2 -c{args.concurrency}; non-2xx {r['non2xx']}) {r['errors']}"
        )
    print(
        f"ratio gateway/bare             : {g['rate'] / b['rate']:8.2f}   (target >= 0.5)",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
