"""A stand-in external bot (a real aiohttp server) that checks the gateway's Standard
Webhooks signature on every call, and a gateway config with a `bot: {webhook: ...}` rule,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.signing import InvalidSignature, decode_secret, verify
from tests.gateway.conftest import base_config

BOT_SECRET = "whsec_c3RhbmQtaW4gYm90IHNpZ25pbmcga2V5IQ=="

# What the stand-in does with one call: a JSON answer, an HTTP status, or a delay first.
Script = Callable[[dict[str, Any]], Any]


class StandInBot:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.bad_signatures = 0
        # One per call: a dict, an int status, raw bytes, ("sleep", seconds, reply) or
        # ("wait", asyncio.Event, reply).
        self.replies: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        # Calls under way now, and the most there ever were at once.
        self.active = 0
        self.most_at_once = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            verify(
                decode_secret(BOT_SECRET), {k.lower(): v for k, v in request.headers.items()}, body
            )
        except InvalidSignature:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        payload = json.loads(body)
        payload["_webhook_id"] = request.headers["webhook-id"]
        self.calls.append(payload)
        reply = self.replies.pop(0) if self.replies else {"action": "answer", "text": "OK"}
        if isinstance(reply, tuple) and reply[0] == "sleep":
            await asyncio.sleep(reply[1])
            reply = reply[2]
        elif isinstance(reply, tuple) and reply[0] == "wait":  # until the test says so
            await reply[1].wait()
            reply = reply[2]
        if isinstance(reply, int):
            return web.Response(status=reply, text="no")
        if isinstance(reply, bytes):
            return web.Response(body=reply, content_type="application/json")
        return web.json_response(reply)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/bot"

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


@pytest.fixture
async def bot() -> AsyncIterator[StandInBot]:
    b = StandInBot()
    await b.start()
    yield b
    await b.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_config(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if backend == "postgres":
        return {"backend": "postgres", "dsn": request.getfixturevalue("pg_dsn")}
    return {"path": str(tmp_path / "db.sqlite")}


def bot_config(
    store: dict[str, Any], outbound_url: str, bot_url: str, **bot: Any
) -> dict[str, Any]:
    """The base test config; messages on `api` go to the bot `helper` first. A handoff
    whose reason is `billing` goes to the billing queue with the billing skill."""
    cfg = base_config(Path("unused.sqlite"), outbound_url)
    cfg["store"] = store
    cfg["bots"] = {
        "helper": {
            "url": bot_url,
            "secret": BOT_SECRET,
            "allow_private_networks": True,
            "timeout": 2,
            **bot,
        }
    }
    cfg["routing"]["rules"][0:0] = [
        {
            "name": "bot-says-billing",
            "when": {"handoff": {"reason": "billing"}},
            "then": {"queue": "billing", "skills": {"billing": 5}, "tags": ["from-bot"]},
        },
        {
            "name": "self-service",
            "when": {"channel": "api"},
            "then": {"queue": "general"},
            "bot": {"webhook": "helper"},
        },
    ]
    return cfg
