"""Real servers for the email tests: a private Dovecot (IMAP) and aiosmtpd (SMTP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aioimaplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from connectors.base import (
    ConnectorContext,
    DeliveryReceipt,
    InboundMessage,
    SubmitResult,
)
from connectors.email.settings import EmailSettings
from tests.gateway.conftest import base_config
from tests.standins.context import MemoryKV

# Real-world mail kept in the repository (see tests/corpora/README.md for origin and licence).
CORPORA = Path(__file__).resolve().parents[1] / "corpora" / "email"


def corpus(pattern: str, *, under: str = "") -> list[Path]:
    """The corpus files matching `pattern` (recursively), sorted; fails loudly when there
    are none, so a missing corpus is an error at collection, never a silent skip."""
    root = CORPORA / under
    found = sorted(root.rglob(pattern))
    if not found:
        raise FileNotFoundError(
            f"no {pattern!r} under {root}: the email corpora belong in the repository "
            "(tests/corpora/README.md)"
        )
    return found


def corpus_file(*parts: str) -> Path:
    """One corpus file; fails loudly when it is missing."""
    path = CORPORA.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} is missing (tests/corpora/README.md)")
    return path


DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "support", "s3cret-pass"
ADDRESS = "support@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------
# Dovecot


@dataclass
class Dovecot:
    host: str
    port: int
    user: str
    password: str
    root: Path


def _ensure_dovecot() -> None:
    if os.path.exists(DOVECOT):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "dovecot-imapd"], check=True, env=env)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """A private Dovecot on a free port, everything under one temp dir (also for bench/)."""
    _ensure_dovecot()
    # not under pytest's 0700 tmp dir: the mail user (nobody) must reach the maildir
    root = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    (root / "run").mkdir()
    (root / "mail").mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    conf = f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""
    (root / "dovecot.conf").write_text(conf)
    subprocess.run([DOVECOT, "-c", str(root / "dovecot.conf")], check=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                raise RuntimeError(f"dovecot did not start on {port}:\n{log}") from None
            time.sleep(0.05)
    try:
        yield Dovecot("127.0.0.1", port, USER, PASSWORD, root)
    finally:
        pid_file = root / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 15)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


class Mailbox:
    """An admin IMAP session on one private mailbox of the test Dovecot."""

    def __init__(self, server: Dovecot, name: str) -> None:
        self.server = server
        self.name = name
        self.client: Any = None

    async def open(self) -> Mailbox:
        self.client = aioimaplib.IMAP4(host=self.server.host, port=self.server.port, timeout=10)
        await self.client.wait_hello_from_server()
        resp = await self.client.login(self.server.user, self.server.password)
        assert resp.result == "OK", resp
        await self.client.create(self.name)
        return self

    async def close(self) -> None:
        if self.client is not None:
            await self.client.logout()

    async def append(
        self, raw: bytes, *, flags: str | None = None, mailbox: str | None = None
    ) -> int:
        resp = await self.client.append(raw, mailbox=mailbox or self.name, flags=flags)
        assert resp.result == "OK", resp
        text = b" ".join(x for x in resp.lines if isinstance(x, bytes)).decode()
        return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))

    async def flags(self, mailbox: str | None = None) -> dict[int, set[str]]:
        """UID -> flags of every message of the mailbox."""
        resp = await self.client.select(mailbox or self.name)
        assert resp.result == "OK", resp
        out: dict[int, set[str]] = {}
        exists = int(next(x.split()[0] for x in resp.lines if x.endswith(b"EXISTS")))
        if exists == 0:
            await self.client.close()
            return out
        resp = await self.client.fetch("1:*", "(UID FLAGS)")
        assert resp.result == "OK", resp
        for line in resp.lines:
            if isinstance(line, bytes) and re.match(rb"^\d+ FETCH", line):
                text = line.decode()
                if "UID " not in text:
                    # an unsolicited flag update (the gateway's session changed it): the
                    # answer to our own FETCH, with the UID, follows for the same message
                    continue
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                out[uid] = set(flags)
        await self.client.close()
        return out

    async def recreate(self) -> None:
        """Delete and create the mailbox again: a new UIDVALIDITY."""
        resp = await self.client.delete(self.name)
        assert resp.result == "OK", resp
        resp = await self.client.create(self.name)
        assert resp.result == "OK", resp


async def seen(mailbox: Mailbox, *uids: int) -> dict[int, set[str]] | None:
    """The mailbox's flags once every one of `uids` (every message, without uids) is
    \\Seen, else None (for `wait_for`). The connector flags a batch only after every
    submit of it returned, so this is how a test knows the core has had its say."""
    flags = await mailbox.flags()
    wanted = uids or tuple(flags)
    return flags if wanted and all("\\Seen" in flags.get(u, set()) for u in wanted) else None


@pytest.fixture
async def mailbox(dovecot: Dovecot) -> AsyncIterator[Mailbox]:
    box = await Mailbox(dovecot, f"t{uuid.uuid4().hex[:10]}").open()
    try:
        yield box
    finally:
        await box.close()


# ---------------------------------------------------------------------------------------
# SMTP


@dataclass
class CapturedMail:
    envelope_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SmtpServer:
    host: str
    port: int
    received: list[CapturedMail] = field(default_factory=list)
    # answer every DATA with this (e.g. "451 4.3.0 try later"); None accepts
    reply: str | None = None
    # DATA commands answered with `reply` instead of accepting
    refused: int = 0


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.server.reply:
            self.server.refused += 1
            return self.server.reply
        data = envelope.original_content or b""
        self.server.received.append(
            CapturedMail(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(data))
        )
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(_Handler(server), hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------------
# A fake core


class FakeCore:
    """Records what the connector submits and dedupes on external_id like the core does."""

    def __init__(self) -> None:
        self.calls: list[InboundMessage | DeliveryReceipt] = []
        self.stored: dict[str, InboundMessage] = {}
        self.receipts: list[DeliveryReceipt] = []
        self.fail_for: set[str] = set()  # substrings of subjects whose submit raises
        self.arrived = asyncio.Event()

    async def submit(self, event: InboundMessage | DeliveryReceipt) -> SubmitResult:
        self.calls.append(event)
        if isinstance(event, DeliveryReceipt):
            self.receipts.append(event)
            self.arrived.set()
            return SubmitResult(None, None)
        for marker in list(self.fail_for):
            if marker in (event.subject or ""):
                raise RuntimeError("store is down")
        if event.external_id in self.stored:
            return SubmitResult("c1", None, duplicate=True)
        self.stored[event.external_id] = event
        self.arrived.set()
        return SubmitResult("c1", f"m{len(self.stored)}")

    def subjects(self) -> list[str]:
        return sorted(m.subject or "" for m in self.stored.values())

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while len(self.stored) + len(self.receipts) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
def kv() -> MemoryKV:
    return MemoryKV()


@pytest.fixture
async def ctx(core: FakeCore, kv: MemoryKV) -> AsyncIterator[ConnectorContext]:
    async with aiohttp.ClientSession() as http:
        yield ConnectorContext(
            submit=core.submit,
            http=http,
            add_route=lambda method, path, handler: None,
            kv=kv,
            log=logging.getLogger("test.email"),
        )


def make_settings(
    *,
    server: Dovecot | None = None,
    mailbox: str = "INBOX",
    smtp_port: int = 1,
    **overrides: Any,
) -> EmailSettings:
    imap_block: dict[str, Any] = {
        "host": server.host if server else "127.0.0.1",
        "port": server.port if server else 1,
        "username": server.user if server else USER,
        "password": server.password if server else PASSWORD,
        "tls": False,
        "mailbox": mailbox,
        "poll_interval": 0.2,
        "retry_interval": 0.2,
        "timeout": 5,
    }
    imap_block.update(overrides.pop("imap", {}))
    smtp_block: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smtp_port,
        "tls": False,
        "starttls": False,
        "timeout": 3,
    }
    smtp_block.update(overrides.pop("smtp", {}))
    data: dict[str, Any] = {
        "imap": imap_block,
        "smtp": smtp_block,
        "address": ADDRESS,
        "from_name": "Example Support",
        "message_id_domain": "mail.example.com",
        "max_attachment_bytes": 1_000_000,
    }
    data.update(overrides)
    return EmailSettings.model_validate(data)


def make_mail(
    subject: str,
    *,
    sender: str = "Alice <alice@customer.test>",
    to: str = ADDRESS,
    body: str = "Hello, my order did not arrive.",
    message_id: str | None = None,
    no_message_id: bool = False,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Apr 2012 18:22:10 +0000"
    if not no_message_id:
        msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@customer.test>"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)


def email_config(
    tmp_path: Path, dovecot: Dovecot, mailbox: Mailbox, smtp: SmtpServer
) -> dict[str, Any]:
    """A gateway config with one email channel `mail` on the test Dovecot and SMTP server."""
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["channels"].append(
        {
            "name": "mail",
            "type": "email",
            "address": "support@example.com",
            "from_name": "Example Support",
            "message_id_domain": "mail.example.com",
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "username": dovecot.user,
                "password": dovecot.password,
                "tls": False,
                "mailbox": mailbox.name,
                "poll_interval": 0.2,
                "retry_interval": 0.2,
                "timeout": 5,
            },
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "tls": False,
                "starttls": False,
                "timeout": 3,
            },
        }
    )
    return cfg


def dsn(original_id: str, *actions: tuple[str, str, str], message_id: str | None = None) -> bytes:
    """A delivery status notification (RFC 3464) from a domainless MAILER-DAEMON, about
    `original_id`, with one block per (recipient, action, status)."""
    blocks = "".join(
        f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status} mailbox busy\r\n"
        for rcpt, action, status in actions
    )
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON\r\nTo: support@example.com\r\n"
        "Subject: Delivery Status Notification\r\n"
        f"Message-ID: {message_id or f'<{uuid.uuid4().hex}@mx.customer.test>'}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nThis is a report about your message.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n"
        f"{blocks}\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nMessage-ID: {original_id}\r\n\r\n--B--\r\n"
    ).encode()


# ---------------------------------------------------------------------------------------
# Hostile mail (issue 9): cheap to send, costly to read


def many_cc_mail(n: int = 50_000, *, sender: str = "Eve <eve@customer.test>") -> bytes:
    """A mail whose Cc lists `n` addresses (50,000 make ~1.4 MB of header)."""
    cc = ",\r\n ".join(f"user{i}@example{i % 97}.test" for i in range(n))
    return (
        f"From: {sender}\r\nTo: {ADDRESS}\r\nCc: {cc}\r\nSubject: Cc to everyone\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Mon, 02 Apr 2012 18:22:10 +0000\r\n\r\n"
        "Please forward this to everyone.\r\n"
    ).encode()


def deep_html_mail(depth: int = 50_000, *, sender: str = "Deb <deb@customer.test>") -> bytes:
    """An HTML-only mail whose text sits `depth` <div>s deep (50,000 make ~0.55 MB)."""
    html = (
        "<html><body><p>Hello, my invoice is wrong.</p>"
        + "<div>" * depth
        + "deep down"
        + "</div>" * depth
        + "</body></html>"
    )
    return (
        f"From: {sender}\r\nTo: {ADDRESS}\r\nSubject: Deep HTML\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Mon, 02 Apr 2012 18:22:10 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n"
    ).encode()


def many_parts_mail(parts: int, *, sender: str = "Pat <pat@customer.test>") -> bytes:
    """A multipart/mixed mail of `parts` tiny text parts (30,000 make ~1 MB and take the
    standard library's parser about two seconds of CPU)."""
    body = "".join("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(parts))
    return (
        f"From: {sender}\r\nTo: {ADDRESS}\r\nSubject: Many parts\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Mon, 02 Apr 2012 18:22:10 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"{body}--b--\r\n"
    ).encode()
