"""Fixtures for the core: a config builder and an in-process gateway on a free port."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.app import Gateway
from gateway.config import load_config_text

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN = "test-admin-token"
CHANNEL = "test-channel-token"


def agent_token(agent: str) -> str:
    return f"test-{agent}-token"


def base_config(
    db: Path, outbound_url: str = "http://127.0.0.1:9/none", **over: Any
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536},
        "store": {"path": str(db)},
        "auth": {
            "tokens": [
                {"name": "admin", "role": "admin", "token": ADMIN},
                {"name": "helpdesk", "role": "integration", "token": "test-integration-token"},
                *(
                    {"name": a, "role": "agent", "agent": a, "token": agent_token(a)}
                    for a in ("alice", "bob", "carol")
                ),
            ]
        },
        "agents": [
            {
                "id": "alice",
                "name": "Alice",
                "skills": {"billing": 8},
                "capacity": {"default": 2},
                "queues": ["general", "billing"],
                "presence": "online",
            },
            {
                "id": "bob",
                "name": "Bob",
                "skills": {"technical": 9},
                "capacity": {"default": 2},
                "queues": ["general"],
                "presence": "online",
            },
            {
                "id": "carol",
                "name": "Carol",
                "skills": {"billing": 5},
                "capacity": {"default": 1},
                "queues": ["general", "billing"],
                "presence": "offline",
            },
        ],
        "channels": [
            {
                "name": "api",
                "type": "api",
                "inbound_token": CHANNEL,
                "outbound_url": outbound_url,
                "allow_private_networks": True,  # the test receivers listen on loopback
                "signing_secret": SECRET,
            },
        ],
        "routing": {
            "queues": [
                {"name": "general", "strategy": "round_robin"},
                {"name": "billing", "strategy": "skills"},
            ],
            "default": {"queue": "general"},
            "rules": [
                {
                    "name": "billing",
                    "when": {"text": {"contains": ["refund", "invoice"]}},
                    "then": {"queue": "billing", "skills": {"billing": 5}},
                },
                {
                    "name": "vip",
                    "when": {"contact": {"segment": "vip"}},
                    "then": {"priority": "urgent"},
                },
            ],
        },
        "outbox": {"base_delay": 0.05, "max_delay": 0.2, "max_attempts": 4, "send_timeout": 5},
    }
    for key, value in over.items():
        cfg[key] = value
    return cfg


def config_text(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


class Client:
    """A small HTTP client for the gateway's API."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def call(
        self, method: str, path: str, token: str | None = ADMIN, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def conversation(self, conv_id: str) -> dict[str, Any]:
        """One conversation with its messages."""
        status, body = await self.call("GET", f"/v1/conversations/{conv_id}")
        assert status == 200, body
        return dict(body)

    async def assigned(self, conv_id: str) -> dict[str, Any] | None:
        """The conversation once it has an assignee, else None (for `wait_for`)."""
        conv = await self.conversation(conv_id)
        return conv if conv["assignee"] else None

    async def message_with_status(
        self, conv_id: str, msg_id: str, status: str
    ) -> dict[str, Any] | None:
        """The message once it has `status`, else None (for `wait_for`)."""
        conv = await self.conversation(conv_id)
        return next(
            (m for m in conv["messages"] if m["id"] == msg_id and m["status"] == status), None
        )

    async def conversations_of(self, identity: str) -> list[dict[str, Any]]:
        """The conversations of the contact holding `identity` (`kind:address`), or []."""
        status, body = await self.call("GET", "/v1/contacts", params={"identity": identity})
        if status != 200:
            return []
        _, page = await self.call(
            "GET", "/v1/conversations", params={"contact": body["contacts"][0]["id"]}
        )
        return list(page["conversations"])

    async def inbound(
        self, external_id: str, text: str, sender: str = "cust-1", **extra: Any
    ) -> tuple[int, Any]:
        body = {
            "external_id": external_id,
            "text": text,
            "from": {"id": sender, **extra.pop("from_", {})},
            **extra,
        }
        return await self.call("POST", "/v1/channels/api/messages", token=CHANNEL, json=body)


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        cfg: dict[str, Any] | None = None, clock: Callable[[], float] = time.time
    ) -> tuple[Gateway, Client]:
        loaded = load_config_text(config_text(cfg or base_config(tmp_path / "db.sqlite")))
        gw = Gateway(loaded, clock=clock)
        await gw.start()
        started.append(gw)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return gw, Client(f"http://127.0.0.1:{gw.port}", http)

    yield make
    for s in sessions:
        await s.close()
    for gw in started:
        await gw.stop()


class Receiver:
    """A real HTTP server standing in for an `api` channel's outbound_url."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []  # statuses to answer before 200
        self.got = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        self.got.set()
        status = self.script.pop(0) if self.script else 200
        return web.json_response({"id": f"rcv-{len(self.requests)}"}, status=status)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/outbound", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/outbound"

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
