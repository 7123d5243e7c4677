"""The web chat connector's invitation endpoints on their own (a fake core): invitations
are offered only while someone can answer (the channel open, an agent online) unless a rule
opts out, from the availability the core last told the connector; the widget reports an
invitation shown, and a visitor's answer is counted once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

import connectors.webchat.connector as webchat_module
from connectors.base import WaitStatus
from connectors.webchat import WebchatConnector
from connectors.webchat.settings import WebchatSettings
from tests.standins.context import FakeGateway

NAME = "webchat"
RULES = [
    {"name": "pricing", "when": {"url": "/pricing*"}, "text": {"en": "Questions on prices?"}},
    {
        "name": "leave-a-message",
        "when": {"also_when_unavailable": True},
        "text": {"en": "Leave us a message, we answer soon.", "de": "Schreiben Sie uns."},
    },
]
CLOSED = WaitStatus("closed", opens_time="08:00", opens_in_days=1, opens_weekday=1)


class Core:
    """What the fake core tells the connector about availability, and what it counted."""

    def __init__(self) -> None:
        self.agents_online = 1
        self.status: WaitStatus | None = None
        self.asked = 0
        self.asked_again = asyncio.Event()
        self.counted: list[tuple[str, str]] = []

    async def availability(self) -> dict[str, Any]:
        self.asked += 1
        self.asked_again.set()
        info: dict[str, Any] = {"agents_online": self.agents_online}
        if self.status is not None:
            info["status"] = self.status
        return info

    def invitation_event(self, invitation: str, event: str) -> None:
        self.counted.append((invitation, event))


class Channel:
    def __init__(self, gateway: FakeGateway, connector: WebchatConnector, core: Core) -> None:
        self.gateway = gateway
        self.connector = connector
        self.core = core
        self.http = aiohttp.ClientSession()

    @property
    def origin(self) -> str:
        return self.gateway.url

    def url(self, path: str = "") -> str:
        return f"{self.gateway.url}/webchat/{NAME}/invitations{path}"

    async def offered(self) -> tuple[bool, list[str]]:
        async with self.http.get(self.url(), headers={"Origin": self.origin}) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
        return body["available"], [inv["name"] for inv in body["invitations"]]

    async def shown(self, invitation: str, origin: str | None = "") -> aiohttp.ClientResponse:
        headers = {"Origin": self.origin if origin == "" else origin} if origin is not None else {}
        async with self.http.post(self.url(f"/{invitation}/shown"), headers=headers) as resp:
            await resp.read()
            return resp


MakeChannel = Callable[..., Awaitable[Channel]]


@pytest.fixture
async def make_channel() -> AsyncIterator[MakeChannel]:
    made: list[Channel] = []

    async def make(core: Core | None = None, **settings: Any) -> Channel:
        core = core or Core()
        gateway = FakeGateway()
        ctx = gateway.ctx
        ctx.availability = core.availability
        ctx.invitation_event = core.invitation_event
        values = {
            "secret": "test-webchat-secret-0123456789",
            "allowed_origins": [gateway.url],
            "invitations": RULES,
        } | settings
        connector = WebchatConnector(NAME, WebchatSettings.model_validate(values), ctx)
        await gateway.start()
        await connector.start()
        channel = Channel(gateway, connector, core)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.connector.stop()
        await channel.http.close()
        await channel.gateway.close()


@pytest.fixture(autouse=True)
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    # The connector asks the core once, then only when its poller runs (tests that need the
    # poller make it quick).
    monkeypatch.setattr(webchat_module, "AVAILABILITY_INTERVAL", 3600.0)


@pytest.mark.parametrize(
    ("agents_online", "status", "available", "offered"),
    [
        (1, None, True, ["pricing", "leave-a-message"]),
        (0, None, False, ["leave-a-message"]),  # nobody online
        (2, CLOSED, False, ["leave-a-message"]),  # outside business hours
    ],
)
async def test_an_invitation_is_offered_only_while_someone_can_answer(
    make_channel: MakeChannel,
    agents_online: int,
    status: WaitStatus | None,
    available: bool,
    offered: list[str],
) -> None:
    core = Core()
    core.agents_online, core.status = agents_online, status
    channel = await make_channel(core)
    assert await channel.offered() == (available, offered)


async def test_the_endpoint_answers_from_what_the_core_last_told(
    make_channel: MakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = await make_channel()
    for _ in range(20):  # every page view: no question to the core per request
        assert await channel.offered() == (True, ["pricing", "leave-a-message"])
    assert channel.core.asked == 1

    # The last agent goes offline: the connector's poller learns it, the endpoint says it.
    monkeypatch.setattr(webchat_module, "AVAILABILITY_INTERVAL", 0.05)
    channel.core.agents_online = 0
    await channel.connector.stop()
    await channel.connector.start()
    for _ in range(2):  # the second question comes once the first answer was taken
        channel.core.asked_again.clear()
        await asyncio.wait_for(channel.core.asked_again.wait(), 5)
    assert await channel.offered() == (False, ["leave-a-message"])


async def test_a_shown_invitation_is_counted_for_allowed_origins(
    make_channel: MakeChannel,
) -> None:
    channel = await make_channel()
    resp = await channel.shown("pricing")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == channel.origin
    assert channel.core.counted == [("pricing", "shown")]

    assert (await channel.shown("made-up")).status == 404
    assert (await channel.shown("pricing", origin="https://evil.test")).status == 403
    assert (await channel.shown("pricing", origin=None)).status == 403  # not from a page
    assert channel.core.counted == [("pricing", "shown")]


async def test_shown_reports_are_rate_limited_per_address(
    make_channel: MakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webchat_module, "SHOWN_PER_MINUTE", 3)
    channel = await make_channel()
    statuses = [(await channel.shown("pricing")).status for _ in range(3)]
    refused = await channel.shown("pricing")
    assert statuses == [204, 204, 204]
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert channel.core.counted == [("pricing", "shown")] * 3


async def test_an_answer_is_counted_once_and_only_for_a_configured_invitation(
    make_channel: MakeChannel,
) -> None:
    channel = await make_channel()
    ws_url = f"{channel.gateway.url}/webchat/{NAME}/ws"
    async with channel.http.ws_connect(ws_url, origin=channel.origin) as ws:
        await ws.send_json({"type": "hello", "token": None})
        await receive_type(ws, "welcome")
        frames = [
            {"type": "message", "client_id": "c1", "text": "Hi", "invitation": "pricing"},
            # A resend after a reconnect: the same message, acknowledged again.
            {"type": "message", "client_id": "c1", "text": "Hi", "invitation": "pricing"},
            {"type": "message", "client_id": "c2", "text": "Hi", "invitation": "made-up"},
        ]
        for frame in frames:
            await ws.send_json(frame)
            await receive_type(ws, "ack")
    assert channel.core.counted == [("pricing", "answered")]


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame: dict[str, Any] = json.loads(msg.data)
        if frame["type"] == kind:
            return frame
