"""Cluster benchmark: CPU per ingested message on PostgreSQL versus SQLite, and one versus two
instances.

In one run, on this machine, each scenario a fresh store and fresh `switchboard run`
processes: N messages through the `api` channel at concurrency C (each a new customer, so
a new conversation that routing assigns), spread round-robin over the scenario's
instances. Measured from /proc: the CPU time (user + system) the scenario's processes
spent while the load ran — the gateways, and for PostgreSQL its server processes (the
postmaster and its backends), and Redis — divided by the messages taken. Scenarios:

1. sqlite-1: one instance on SQLite (the baseline: the database is inside the process);
2. postgres-1: one instance on PostgreSQL with Redis coordination configured;
3. postgres-2: two instances on the same PostgreSQL and Redis.

Printed: per scenario messages/s, CPU ms per message (gateways, database, Redis, total),
and the ratio of the total to the baseline measured in the same run.

    python -m bench.cluster --messages 3000 --concurrency 32

What a 2-core machine can show: the CPU each message costs, and how that cost moves with
the engine (a client-server database costs protocol work on both sides that SQLite does in
process) and with a second instance (coordination: wake-ups across Redis, leases, a routing
pass on each instance). What it cannot show: that two instances take more messages per
second than one — with the load generator, two gateways, PostgreSQL and Redis on the same
2 cores there is no idle core for a second instance to use, so the wall-clock rates are
reported but say nothing about scaling out onto more hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.ingest import ADMIN, TOKEN, free_port, gateway_config
from tests.pg import PgServer
from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a live process (plus its reaped children's, if asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # After the name: state is field 3; utime 14, stime 15, cutime 16, cstime 17 (1-based).
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def postgres_cpu(data: Path) -> float:
    """The PostgreSQL server's CPU: the postmaster (with its exited backends) and its live
    children."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[1]) == postmaster:
            total += cpu_seconds(int(entry.name))
    return total


async def wait_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until /healthz answers (a loaded 2-core machine can take a while to import it all)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


@dataclass
class Result:
    name: str
    messages: int
    wall: float
    gateway_cpu: float
    db_cpu: float
    redis_cpu: float

    @property
    def total_cpu(self) -> float:
        return self.gateway_cpu + self.db_cpu + self.redis_cpu

    def per_message_ms(self, cpu: float) -> float:
        return 1000 * cpu / self.messages


async def send_load(bases: list[str], n: int, concurrency: int, prefix: str) -> int:
    """N new-customer messages at concurrency C, round-robin over `bases`; each must be
    taken (202)."""
    counter = itertools.count()
    taken = 0

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal taken
        while (i := next(counter)) < n:
            base = bases[i % len(bases)]
            body = {
                "external_id": f"{prefix}-{i}",
                "text": f"hello {i}",
                "from": {"id": f"{prefix}-c{i}"},
            }
            async with http.post(
                f"{base}/v1/channels/api/messages",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as r:
                if r.status != 202:
                    raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
                await r.read()
                taken += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return taken


async def routed(bases: list[str], n: int, timeout: float = 120) -> None:
    """Wait until routing assigned all N conversations (the work a message causes)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(
                f"{bases[0]}/v1/conversations?status=open&limit=1",
                headers={"Authorization": f"Bearer {ADMIN}"},
            ) as r:
                if not (await r.json())["conversations"]:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("routing did not finish")


async def scenario(
    name: str,
    instances: int,
    dsn: str | None,
    redis_url: str | None,
    pg_data: Path | None,
    redis_pid: int | None,
    args: argparse.Namespace,
    tmp: Path,
) -> Result:
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for i in range(instances):
            port = free_port()
            cfg: dict[str, Any] = gateway_config(port, tmp / f"{name}.db", args.agents)
            if dsn is not None:
                cfg["store"] = {"backend": "postgres", "dsn": dsn, "pool_size": 10}
            if redis_url is not None:
                cfg["coordination"] = {"redis": redis_url, "prefix": f"bench-{name}"}
            path = tmp / f"{name}-{i}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=(tmp / f"{name}-{i}.log").open("ab"),
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            procs.append(proc)
            await wait_up(port, proc)
            bases.append(f"http://127.0.0.1:{port}")
        # Warm-up (imports, caches, prepared statements), not measured.
        await send_load(bases, args.warmup, args.concurrency, f"{name}-warm")
        await routed(bases, args.warmup)
        await asyncio.sleep(1)

        def sample() -> tuple[float, float, float]:
            gw = sum(cpu_seconds(p.pid) for p in procs)
            db = postgres_cpu(pg_data) if pg_data is not None else 0.0
            rd = cpu_seconds(redis_pid) if redis_pid is not None else 0.0
            return gw, db, rd

        before = sample()
        started = time.perf_counter()
        taken = await send_load(bases, args.messages, args.concurrency, name)
        await routed(bases, args.messages)
        wall = time.perf_counter() - started
        after = sample()
        return Result(name, taken, wall, *(a - b for a, b in zip(after, before, strict=True)))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-cluster-"))
    pg = PgServer()
    redis = RedisServer()
    pg.start()
    redis.start()
    results: list[Result] = []
    try:
        results.append(await scenario("sqlite-1", 1, None, None, None, None, args, tmp))
        assert redis._proc is not None
        rpid = redis._proc.pid
        for name, n in (("postgres-1", 1), ("postgres-2", 2)):
            dsn = await pg.new_database()
            results.append(await scenario(name, n, dsn, redis.url, pg.data, rpid, args, tmp))
    finally:
        redis.close()
        pg.stop()
    base = results[0]
    print(
        f"{args.messages} messages per scenario at concurrency {args.concurrency}, "
        f"{args.agents} agents; CPU from /proc; load average at the end: "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print(
        "| scenario | msg/s (wall) | gateway CPU ms/msg | database ms/msg | redis ms/msg "
        "| total ms/msg | total / sqlite-1 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.name} | {r.messages / r.wall:.0f} | {r.per_message_ms(r.gateway_cpu):.2f} "
            f"| {r.per_message_ms(r.db_cpu):.2f} | {r.per_message_ms(r.redis_cpu):.2f} "
            f"| {r.per_message_ms(r.total_cpu):.2f} | {r.total_cpu / base.total_cpu:.2f} |"
        )
    two, one = results[2], results[1]
    print(
        f"two instances / one on PostgreSQL: CPU per message {two.total_cpu / one.total_cpu:.2f}, "
        f"wall rate {(two.messages / two.wall) / (one.messages / one.wall):.2f} "
        "(a 2-core machine cannot show scaling out: see the docstring)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--agents", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
