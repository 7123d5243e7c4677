"""Fixtures for the web chat and the console: an in-process gateway on a fixed free port
(the widget's allowed origin must be known before start) and Debian's Chromium driven by
Playwright."""

from __future__ import annotations

import json
import re
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

import connectors.webchat.connector as webchat_module
from gateway.app import Gateway
from tests.gateway.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    ADMIN,
    Client,
    agent_token,
    base_config,
    gateway_factory,
    receiver,
    wait_for,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = "test-webchat-secret-0123456789"
CHANNEL = "webchat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def webchat_config(db: Path, port: int, **settings: Any) -> dict[str, Any]:
    cfg = base_config(db)
    cfg["server"]["port"] = port
    cfg["server"]["shutdown_timeout"] = 2
    channel: dict[str, Any] = {
        "name": CHANNEL,
        "type": "webchat",
        "secret": SECRET,
        "allowed_origins": [f"http://127.0.0.1:{port}"],
        "title": "Test shop chat",
        "greeting": "Hello from the test shop!",
    }
    channel.update(settings)
    cfg["channels"].append(channel)
    return cfg


@dataclass
class Chat:
    gw: Gateway
    api: Client
    base: str
    origin: str
    http: aiohttp.ClientSession
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"{self.base}/webchat/{CHANNEL}/ws"

    async def connect(self, origin: str | None = None) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(self.ws_url, origin=origin or self.origin)
        self.sockets.append(ws)
        return ws

    async def visitor(
        self, token: str | None = None
    ) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
        ws = await self.connect()
        await ws.send_json({"type": "hello", "token": token})
        welcome = await receive(ws)
        assert welcome["type"] == "welcome", welcome
        return ws, welcome

    async def conversations(self) -> list[dict[str, Any]]:
        status, body = await self.api.call("GET", f"/v1/conversations?channel={CHANNEL}")
        assert status == 200, body
        return list(body["conversations"])

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        status, body = await self.api.call("GET", f"/v1/conversations/{conversation_id}")
        assert status == 200, body
        return list(body["messages"])

    async def assigned(self) -> dict[str, Any]:
        """The (only) webchat conversation, once routing assigned it."""

        async def ready() -> dict[str, Any] | None:
            convs = await self.conversations()
            return convs[0] if convs and convs[0]["assignee"] else None

        conv: dict[str, Any] = await wait_for(ready, timeout=10)
        return conv


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    data: dict[str, Any] = json.loads(msg.data)
    return data


@pytest.fixture(autouse=True)
def fast_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    # The widget learns about presence changes by a poll; make it quick for the tests.
    monkeypatch.setattr(webchat_module, "AVAILABILITY_INTERVAL", 0.3)


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        return "" if body is None else str(body.get_content())

    def code(self) -> str:
        found = re.search(r"\b([0-9]{6})\b", self.text)
        assert found, self.text
        return found.group(1)


class Outgoing:
    """A real SMTP server (aiosmtpd) standing in for the relay of the gateway's email channel."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.mails.append(Mail(list(envelope.rcpt_tos), msg))
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def channel(self) -> dict[str, Any]:
        """An email channel sending here; its mailbox (IMAP) is not reachable, which only
        keeps it from reading mail."""
        return {
            "name": "mail",
            "type": "email",
            "address": "support@shop.test",
            "from_name": "Test Shop",
            "imap": {
                "host": "127.0.0.1",
                "port": free_port(),
                "username": "support",
                "password": "unused",
                "tls": False,
                "retry_interval": 30,
            },
            "smtp": {"host": "127.0.0.1", "port": self.port, "tls": False, "starttls": False},
        }


@pytest.fixture
def outgoing() -> Iterator[Outgoing]:
    server = Outgoing()
    server.start()
    yield server
    server.stop()


class TestClock:
    """Wall time plus whatever the test skips ahead: the gateway's injected clock."""

    __test__ = False

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
async def make_chat(
    gateway_factory: Callable[..., Awaitable[tuple[Gateway, Client]]],  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[Chat]]]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        channels: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        outbound_url: str | None = None,
        **settings: Any,
    ) -> Chat:
        port = free_port()
        cfg = webchat_config(tmp_path / "db.sqlite", port, **settings)
        cfg["channels"].extend(channels or [])
        if outbound_url is not None:
            cfg["channels"][0]["outbound_url"] = outbound_url
        gw, client = await gateway_factory(cfg, clock=clock)
        http = aiohttp.ClientSession()
        sessions.append(http)
        base = f"http://127.0.0.1:{port}"
        return Chat(gw, client, base, base, http)

    yield make
    for s in sessions:
        await s.close()


@pytest.fixture
async def chat(make_chat: Callable[..., Awaitable[Chat]]) -> Chat:
    return await make_chat()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


class PageWatch:
    """Collects what would show up in the browser's console as a problem."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def problems(self) -> list[str]:
        """Script errors and refused content (CSP); not the expected socket errors of a
        test that takes the network away."""
        return [
            e
            for e in self.errors
            if e.startswith("pageerror") or "Content Security Policy" in e or "Refused" in e
        ]

    def attach(self, page: Page) -> Page:
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        return page


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


async def new_page(context: BrowserContext, watch: PageWatch) -> Page:
    page = await context.new_page()
    return watch.attach(page)


def artifact(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


class Widget:
    """The chat widget as a visitor sees it (Playwright's CSS pierces its Shadow DOM)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.bubble = page.locator("button.bubble")
        self.panel = page.locator("section.panel")
        self.input = page.locator("section.panel textarea")
        self.log = page.locator("ol.log")
        self.banner = page.locator("section.panel .banner")
        self.typing = page.locator("section.panel .typing")

    async def open(self) -> None:
        if not await self.panel.is_visible():
            await self.bubble.click()
        await self.panel.wait_for(state="visible")

    async def skip_prechat(self) -> None:
        await self.page.locator("form.prechat button.secondary").click()

    async def send(self, text: str) -> None:
        await self.input.fill(text)
        await self.input.press("Enter")

    def message(self, text: str, direction: str | None = None) -> Any:
        cls = f"li.msg.{direction}" if direction else "li.msg"
        return self.page.locator(cls, has=self.page.locator(".text", has_text=text))

    async def texts(self) -> list[str]:
        return await self.page.locator("li.msg .text").all_text_contents()


class Console:
    """The agent console page."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def sign_in(self, base: str, token: str) -> None:
        await self.page.goto(f"{base}/console")
        await self.page.get_by_label("Agent token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.locator("#live.on").wait_for()

    async def open(self, conversation_id: str) -> None:
        await self.page.locator(f'#mine button.conv-item[data-id="{conversation_id}"]').click()
        # Loaded, not just shown: what a test types before that races the first render.
        await self.page.locator(f'#conv[data-loaded="{conversation_id}"]').wait_for()

    def message(self, text: str) -> Any:
        return self.page.locator("#messages li.msg", has=self.page.locator(".text", has_text=text))

    async def reply(self, text: str) -> None:
        box = self.page.get_by_label("Reply", exact=True)
        await box.fill(text)
        await box.press("Enter")


# --- shared set-up of the console tests ------------------------------------------------------
SHOTS = Path(tempfile.gettempdir()) / "switchboard-console-shots"
GatewayFactory = Callable[..., Awaitable[tuple[Gateway, Client]]]


def shot(name: str) -> str:
    """Where a console test saves a screenshot to look at."""
    SHOTS.mkdir(exist_ok=True)
    return str(SHOTS / name)


async def console_gateway(
    factory: GatewayFactory, config: dict[str, Any], online: tuple[str, ...] | None = None
) -> tuple[Client, str]:
    """An in-process gateway and its base URL; with `online`, every other agent of the
    config is set offline, so routing is predictable."""
    gw, client = await factory(config)
    if online is not None:
        for agent in config["agents"]:
            if agent["id"] not in online:
                status, body = await client.call(
                    "PUT", f"/v1/agents/{agent['id']}/presence", json={"status": "offline"}
                )
                assert status == 200, body
    return client, f"http://127.0.0.1:{gw.port}"


async def routed_conversation(client: Client, ext: str, text: str, sender: str, name: str) -> str:
    """An api-channel message from `sender`, waited for until routing assigned it."""
    code, body = await client.inbound(ext, text, sender, from_={"name": name})
    assert code == 202, body
    conv_id = str(body["conversation_id"])
    await wait_for(lambda: client.assigned(conv_id), timeout=10)
    return conv_id
