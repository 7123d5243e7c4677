"""A thin, typed layer over aioimaplib: connect, select, UID SEARCH/FETCH/STORE/MOVE, IDLE."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aioimaplib

from connectors.base import AuthFailed, NotReady
from connectors.email.settings import ImapSettings

_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
_UIDNEXT_RE = re.compile(rb"UIDNEXT (\d+)")
_FETCH_START_RE = re.compile(rb"^\d+ FETCH \(")
_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_CHANGE_RE = re.compile(rb"^\d+ (EXISTS|RECENT|EXPUNGE)|^\d+ FETCH|^VANISHED")
_EXISTS_RE = re.compile(rb"^(\* )?\d+ EXISTS")

# What a connection or protocol problem looks like from aioimaplib.
IMAP_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    aioimaplib.AioImapException,
    ConnectionError,
    ssl.SSLError,
)


class ImapError(Exception):
    """The server answered a command with NO/BAD (or the connection broke mid-way)."""


@dataclass(slots=True)
class FetchedMessage:
    uid: int
    raw: bytes
    flags: tuple[str, ...]


def _text(lines: list[Any]) -> str:
    return " ".join(
        bytes(line).decode("utf-8", "replace") for line in lines if isinstance(line, bytes)
    )


class ImapConnection:
    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: Any = None
        self.uidvalidity: int | None = None
        self.uidnext: int | None = None
        self.lost = asyncio.Event()
        # The server announced new mail (an untagged EXISTS) since this was last cleared.
        # aioimaplib drops an EXISTS that comes during a UID command or between commands,
        # and the server tells a session only once: without this, mail landing while we
        # acknowledge a batch would wait for the next IDLE timeout.
        self.new_mail = False

    # -- connection -------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, log in and select the mailbox. NotReady / AuthFailed as the contract says."""
        s = self.settings
        try:
            if s.tls:
                self.client = aioimaplib.IMAP4_SSL(
                    host=s.host,
                    port=s.port,
                    timeout=s.timeout,
                    ssl_context=ssl.create_default_context(),
                )
            else:
                self.client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=s.timeout)
            self.client.protocol.conn_lost_cb = self._on_lost
            self._watch_new_mail(self.client.protocol)
            await self.client.wait_hello_from_server()
            if s.starttls:
                await self._starttls()
        except (AuthFailed, NotReady):
            await self.close()
            raise
        except IMAP_ERRORS as exc:
            await self.close()
            raise NotReady(f"IMAP {s.host}:{s.port} unreachable: {exc!r}") from exc
        try:
            resp = await self.client.login(s.username, s.password)
        except IMAP_ERRORS as exc:
            await self.close()
            raise NotReady(f"IMAP login to {s.host}:{s.port} failed: {exc!r}") from exc
        if resp.result != "OK":
            await self.close()
            raise AuthFailed(f"IMAP login refused for {s.username!r}: {_text(resp.lines)}")
        await self.select(s.mailbox)

    async def _starttls(self) -> None:
        if not self.client.has_capability("STARTTLS"):
            raise AuthFailed("IMAP server does not offer STARTTLS (imap.starttls is set)")
        protocol = self.client.protocol
        resp = await asyncio.wait_for(
            protocol.execute(
                aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
            ),
            self.settings.timeout,
        )
        if resp.result != "OK":
            raise NotReady(f"STARTTLS refused: {_text(resp.lines)}")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            protocol.transport,
            protocol,
            ssl.create_default_context(),
            server_hostname=self.settings.host,
        )
        protocol.transport = transport
        await asyncio.wait_for(protocol.capability(), self.settings.timeout)

    def _on_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def _watch_new_mail(self, protocol: Any) -> None:
        """Note every untagged EXISTS, before aioimaplib routes (or drops) it: the bytes
        pass through the protocol's public `data_received` (asyncio's protocol interface)
        first. A line split across two reads is joined; a mail whose body happens to hold
        such a line only costs one more look at the mailbox."""
        receive = protocol.data_received
        tail = b""

        def noting(data: bytes) -> None:
            nonlocal tail
            seen = tail + data
            if b" EXISTS" in seen:
                lines = seen.split(b"\r\n")
                if any(_EXISTS_RE.match(line) for line in lines[:-1]):
                    self.new_mail = True
            # What may be the start of a line still to be completed (an EXISTS line is short).
            tail = seen[seen.rfind(b"\r\n") + 2 :][-64:] if b"\r\n" in seen else seen[-64:]
            receive(data)

        protocol.data_received = noting

    async def select(self, mailbox: str) -> None:
        try:
            resp = await self.client.select(_quote(mailbox))
        except IMAP_ERRORS as exc:
            raise NotReady(f"IMAP SELECT {mailbox!r} failed: {exc!r}") from exc
        if resp.result != "OK":
            raise NotReady(f"IMAP mailbox {mailbox!r} cannot be selected: {_text(resp.lines)}")
        self.uidvalidity = self.uidnext = None
        for line in resp.lines:
            if isinstance(line, bytes):
                if m := _UIDVALIDITY_RE.search(line):
                    self.uidvalidity = int(m.group(1))
                if m := _UIDNEXT_RE.search(line):
                    self.uidnext = int(m.group(1))

    def has(self, capability: str) -> bool:
        return bool(self.client is not None and self.client.has_capability(capability))

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.get_state() in ("AUTH", "SELECTED", "NONAUTH"):
                await asyncio.wait_for(client.logout(), 5)
        except Exception:
            pass
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    # -- commands ---------------------------------------------------------------------

    async def uid_search(self, *criteria: str) -> list[int]:
        resp = await self.client.uid_search(*criteria, charset=None)
        if resp.result != "OK":
            raise ImapError(f"UID SEARCH {' '.join(criteria)}: {_text(resp.lines)}")
        uids: list[int] = []
        # aioimaplib strips "* SEARCH" from the untagged answer; the last line is the status
        for line in resp.lines[:-1]:
            if not isinstance(line, bytes):
                continue
            tokens = line.split()
            if tokens and tokens[0].upper() == b"SEARCH":
                tokens = tokens[1:]
            if tokens and all(t.isdigit() for t in tokens):
                uids.extend(int(t) for t in tokens)
        return sorted(set(uids))

    async def fetch(self, uids: list[int]) -> list[FetchedMessage]:
        """Bodies with BODY.PEEK[] (fetching never sets \\Seen)."""
        if not uids:
            return []
        resp = await self.client.uid("fetch", ",".join(map(str, uids)), "(UID FLAGS BODY.PEEK[])")
        if resp.result != "OK":
            raise ImapError(f"UID FETCH: {_text(resp.lines)}")
        out: list[FetchedMessage] = []
        meta = b""
        body: bytes | None = None

        def flush() -> None:
            if not meta:
                return
            m = _UID_RE.search(meta)
            if m is None:
                return
            fm = _FLAGS_RE.search(meta)
            flags = tuple(fm.group(1).decode().split()) if fm else ()
            out.append(FetchedMessage(int(m.group(1)), body or b"", flags))

        for line in resp.lines[:-1]:
            if isinstance(line, bytearray):
                body = bytes(line)
            elif isinstance(line, bytes) and _FETCH_START_RE.match(line):
                flush()
                meta, body = line, None
            elif isinstance(line, bytes):
                meta += b" " + line
        flush()
        wanted = set(uids)
        return sorted((m for m in out if m.uid in wanted), key=lambda m: m.uid)

    async def mark_seen(self, uids: Iterable[int]) -> None:
        """Flag the messages \\Seen, all in one UID STORE."""
        which = uid_set(uids)
        if not which:
            return
        resp = await self.client.uid("store", which, "+FLAGS.SILENT", "(\\Seen)")
        if resp.result != "OK":
            raise ImapError(f"UID STORE {which}: {_text(resp.lines)}")

    async def ensure_mailbox(self, name: str) -> None:
        resp = await self.client.create(_quote(name))
        if resp.result != "OK" and b"ALREADYEXISTS" not in b" ".join(
            bytes(x) for x in resp.lines if isinstance(x, bytes | bytearray)
        ):
            # some servers say NO without the response code; a later MOVE will tell
            pass

    async def move(self, uids: Iterable[int], folder: str) -> None:
        """Move the messages to `folder`, all in one UID MOVE (or COPY + STORE + EXPUNGE)."""
        which = uid_set(uids)
        if not which:
            return
        if self.has("MOVE"):
            resp = await self.client.uid("move", which, _quote(folder))
            if resp.result != "OK":
                raise ImapError(f"UID MOVE {which}: {_text(resp.lines)}")
            return
        resp = await self.client.uid("copy", which, _quote(folder))
        if resp.result != "OK":
            raise ImapError(f"UID COPY {which}: {_text(resp.lines)}")
        await self.client.uid("store", which, "+FLAGS.SILENT", "(\\Seen \\Deleted)")
        if self.has("UIDPLUS"):
            await self.client.uid("expunge", which)

    async def noop(self) -> None:
        await self.client.noop()

    # -- IDLE -------------------------------------------------------------------------

    async def idle(self, timeout: float, stop: asyncio.Event) -> bool:
        """IDLE until the mailbox changes, `timeout` passes or `stop` is set.

        Returns True when the server reported a change."""
        client = self.client
        idle_task = await client.idle_start(timeout=timeout)
        changed = False
        stop_wait = asyncio.ensure_future(stop.wait())
        lost_wait = asyncio.ensure_future(self.lost.wait())
        try:
            while True:
                push = asyncio.ensure_future(client.wait_server_push(timeout=timeout + 5))
                done, _ = await asyncio.wait(
                    {push, stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                if push not in done:
                    push.cancel()
                    break
                try:
                    lines = push.result()
                except TimeoutError:
                    break
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                if any(isinstance(x, bytes) and _CHANGE_RE.match(x) for x in lines):
                    changed = True
                    break
        finally:
            stop_wait.cancel()
            lost_wait.cancel()
            if not self.lost.is_set() and client.has_pending_idle():
                client.idle_done()
                with contextlib.suppress(*IMAP_ERRORS):
                    async with asyncio.timeout(self.settings.timeout):  # not wait_for (3.11)
                        await idle_task
            else:
                idle_task.cancel()
        if self.lost.is_set():
            raise ConnectionError("IMAP connection lost during IDLE")
        return changed


def uid_set(uids: Iterable[int]) -> str:
    """An IMAP sequence set of the UIDs, runs collapsed: [1, 2, 3, 5, 7, 8] -> "1:3,5,7:8"."""
    parts: list[str] = []
    run: list[int] = []
    for uid in sorted(set(uids)):
        if run and uid == run[-1] + 1:
            run[-1] = uid
            continue
        if run:
            parts.append(str(run[0]) if run[0] == run[-1] else f"{run[0]}:{run[-1]}")
        run = [uid, uid]
    if run:
        parts.append(str(run[0]) if run[0] == run[-1] else f"{run[0]}:{run[-1]}")
    return ",".join(parts)


def _quote(mailbox: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./-]+", mailbox):
        return mailbox
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
