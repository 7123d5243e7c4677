"""Several `switchboard run` daemons on one PostgreSQL and one Redis, and the load the
cluster tests put on them: providers posting through the `api` channel (retried on another
instance, as a load balancer would), chat visitors on WebSockets, and a slow receiver of
the replies that tells which deliveries the sender could have seen answered."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.cluster.servers import query
from tests.gateway.conftest import ADMIN, CHANNEL, SECRET, base_config, config_text
from tests.gateway.test_e2e_daemon import Daemon, free_port

WEBCHAT_SECRET = "test-webchat-secret-0123456789"


def cluster_config(
    dsn: str,
    redis_url: str | None,
    port: int,
    outbound_url: str,
    agents: int,
    capacity: dict[str, int],
    origins: list[str] | None = None,
) -> dict[str, Any]:
    """One instance's config: the same store, coordination and agents for all."""
    cfg = base_config(Path("/nonexistent.db"), outbound_url)
    cfg["store"] = {"backend": "postgres", "dsn": dsn, "pool_size": 6}
    if redis_url is not None:
        cfg["coordination"] = {"redis": redis_url}
    server = cfg["server"]
    server.update(port=port, max_connections_per_client=2000, shutdown_timeout=5)
    cfg["outbox"] = {"base_delay": 0.5, "max_delay": 2, "send_timeout": 3, "concurrency": 8}
    cfg["auth"]["tokens"] = [t for t in cfg["auth"]["tokens"] if t["role"] != "agent"]
    cfg["agents"] = [
        {
            "id": f"a{i}",
            "name": f"Agent {i}",
            "skills": {"billing": 5},
            "capacity": dict(capacity),
            "queues": ["general", "billing"],
            "presence": "online",
        }
        for i in range(agents)
    ]
    cfg["channels"].append(
        {
            "name": "webchat",
            "type": "webchat",
            "secret": WEBCHAT_SECRET,
            # Any instance serves any visitor: the widget's origin is the shop's page.
            "allowed_origins": ["http://shop.test", *(origins or [])],
            "rate_per_minute": 10_000,
            "max_sockets_per_address": 5_000,
        }
    )
    return cfg


class Cluster:
    def __init__(self, tmp: Path, configs: list[dict[str, Any]]) -> None:
        self.daemons: list[Daemon] = []
        self.bases: list[str] = []
        for i, cfg in enumerate(configs):
            path = tmp / f"gateway-{i}.yaml"
            path.write_text(config_text(cfg))
            port = cfg["server"]["port"]
            self.daemons.append(Daemon(path, port, tmp / f"daemon-{i}.log", start_timeout=90))
            self.bases.append(f"http://127.0.0.1:{port}")
        self.down: set[int] = set()

    async def start(self) -> None:
        # Together: they migrate the empty database at the same moment (one migrates).
        await asyncio.gather(*(d.start() for d in self.daemons))

    def kill(self, i: int) -> None:
        self.down.add(i)
        self.daemons[i].kill()

    async def restart(self, i: int) -> None:
        await self.daemons[i].start()
        self.down.discard(i)

    def stop(self) -> None:
        for d in self.daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()

    def logs(self) -> str:
        return "\n".join(d.log.read_text(errors="replace") for d in self.daemons)


class SlowReceiver:
    """The `api` channel's outbound endpoint. Each request is answered after `delay`; a
    delivery counts as acknowledged only when the answer reaches a sender still there (a
    sender killed meanwhile never learned of it, so its item is sent again: at least once,
    deduplicated by `webhook-id`)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived: Counter[str] = Counter()
        self.acknowledged: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.gate = asyncio.Event()  # cleared: requests wait (a stalled endpoint)
        self.gate.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        hook = request.headers.get("webhook-id", "")
        self.arrived[hook] += 1
        await self.gate.wait()
        await asyncio.sleep(self.delay)
        transport = request.transport
        if transport is None or transport.is_closing():
            return web.Response(status=499)
        self.acknowledged[hook] += 1
        return web.json_response({"id": f"rcv-{hook}"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/outbound", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/outbound"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Load:
    """Customer messages spread over every live instance. A request that fails (the
    instance died, or it answered 5xx) is sent again to the next instance, as a provider's
    retry through a load balancer would; `external_id` makes the retry idempotent."""

    def __init__(self, cluster: Cluster, http: aiohttp.ClientSession) -> None:
        self.cluster, self.http = cluster, http
        self.accepted: dict[str, str] = {}  # external id -> message id
        self.chat_acked: dict[str, str] = {}  # visitor:client id -> message id
        self.retries = 0
        self._rr = itertools.count()

    def instance(self) -> int:
        n = len(self.cluster.bases)
        for _ in range(n):
            i = next(self._rr) % n
            if i not in self.cluster.down:
                return i
        return 0

    async def post(self, ext: str, sender: str) -> None:
        while True:
            base = self.cluster.bases[self.instance()]
            try:
                async with self.http.post(
                    f"{base}/v1/channels/api/messages",
                    headers={"Authorization": f"Bearer {CHANNEL}"},
                    json={"external_id": ext, "text": f"question {ext}", "from": {"id": sender}},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as r:
                    if r.status == 202:
                        self.accepted[ext] = (await r.json())["message_id"]
                        return
                    assert r.status >= 500, (r.status, await r.text())
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.retries += 1
            await asyncio.sleep(0.2)

    async def providers(self, jobs: list[tuple[str, str]], workers: int) -> None:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while not queue.empty():
                ext, sender = queue.get_nowait()
                await self.post(ext, sender)

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def visitor(self, v: int, messages: int, pause: float) -> None:
        """One chat visitor: connects to an instance, writes `messages` messages, each
        waiting for its ack; a socket lost (its instance killed) reconnects to another
        instance with the visitor's token and sends the unacknowledged message again."""
        token: str | None = None
        i = 0
        while i < messages:
            base = self.cluster.bases[self.instance()]
            try:
                async with self.http.ws_connect(
                    f"{base}/webchat/webchat/ws", origin="http://shop.test", heartbeat=5
                ) as ws:
                    await ws.send_json({"type": "hello", "token": token})
                    welcome = await frame(ws, "welcome")
                    token = welcome["token"]
                    while i < messages:
                        client_id = f"m{i}"
                        await ws.send_json(
                            {"type": "message", "client_id": client_id, "text": f"chat {v} {i}"}
                        )
                        got = await frame(ws, "ack")
                        if got["type"] == "error":
                            assert got["code"] == "unavailable", got
                            await asyncio.sleep(0.5)
                            continue
                        self.chat_acked[f"{welcome['visitor_id']}:{client_id}"] = got["message_id"]
                        i += 1
                        await asyncio.sleep(pause)
            except (aiohttp.ClientError, TimeoutError, ConnectionError, AssertionError) as exc:
                if isinstance(exc, AssertionError) and "closed" not in str(exc):
                    raise
                self.retries += 1
                await asyncio.sleep(0.3)


async def frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of type `kind` or `error` (others skipped)."""
    while True:
        msg = await ws.receive(timeout=30)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg.type}"
        data: dict[str, Any] = json.loads(msg.data)
        if data["type"] in (kind, "error"):
            return data


async def reply(http: aiohttp.ClientSession, base: str, conversation_id: str, text: str) -> str:
    async with http.post(
        f"{base}/v1/conversations/{conversation_id}/messages",
        headers={"Authorization": f"Bearer {ADMIN}"},
        json={"text": text},
    ) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["id"])


async def capacity_replay(dsn: str) -> tuple[Counter[str], dict[tuple[str, str], int]]:
    """The event log replayed: how often each conversation was assigned, and the highest
    load each (agent, channel kind) ever had. A conversation leaves its agent's load when
    it is resolved, transferred or assigned to someone else (none of which this load does,
    but the replay follows them anyway)."""
    kinds = {
        r["id"]: r["channel_kind"]
        for r in await query(dsn, "SELECT id, channel_kind FROM conversations")
    }
    events = await query(dsn, "SELECT type, data FROM events ORDER BY id")
    holder: dict[str, str] = {}
    load: Counter[tuple[str, str]] = Counter()
    peak: dict[tuple[str, str], int] = {}
    assigned: Counter[str] = Counter()
    for ev in events:
        data = json.loads(ev["data"])
        conv = data.get("conversation_id") or (data.get("conversation") or {}).get("id")
        if conv is None:
            continue
        if ev["type"] == "conversation.assigned":
            assigned[conv] += 1
            if conv in holder:
                load[(holder[conv], kinds[conv])] -= 1
            holder[conv] = data["agent"]
            key = (data["agent"], kinds[conv])
            load[key] += 1
            peak[key] = max(peak.get(key, 0), load[key])
        elif ev["type"] in ("conversation.resolved", "conversation.transferred") and conv in holder:
            load[(holder.pop(conv), kinds[conv])] -= 1
    return assigned, peak


async def until(check: Any, timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(every)


_ = SECRET  # the outbound signing secret every instance shares (base_config)
