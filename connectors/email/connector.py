"""The email channel: IMAP in (IDLE or polling, resumable by UID), SMTP out.

What the channel reads from its mailbox:

- First start (no position saved for this mailbox yet): every message from the oldest
  unseen one on, read or not, plus every message that arrives after the channel started,
  whatever its flags: the UIDs from the UIDNEXT the server announced when the channel first
  selected the mailbox. Read mail older than the oldest unseen message is history, left to
  `switchboard email backfill`. Because UIDNEXT is taken before any search, a message that
  lands while the first start looks around is never skipped.
- Afterwards: every UID above the saved watermark, in UID order, resumed after a restart;
  a UIDVALIDITY change resynchronises the whole mailbox (the core drops what it already
  has as duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiosmtplib

from connectors.base import (
    AuthFailed,
    Capability,
    CliCommand,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryReceipt,
    DeliveryResult,
    InboundMessage,
    LeaseLost,
    NotReady,
    OutboundMessage,
    RawItem,
    Refused,
    Unavailable,
    acquire_unless,
)
from connectors.email.backfill import BACKFILL_COMMAND
from connectors.email.compose import ComposeError, build_message
from connectors.email.imap import IMAP_ERRORS, FetchedMessage, ImapConnection, ImapError
from connectors.email.parse import BounceReport, ParsedEmail, to_event
from connectors.email.parsepool import LimitExceeded, MailParser, PoolUnavailable, TaskFailed
from connectors.email.settings import EmailSettings

# Backoff between reconnection attempts, and for a message whose submit failed.
RECONNECT_MIN, RECONNECT_MAX = 1.0, 300.0
RETRY_MAX = 900.0
# The longest wait before a mail the gateway could not take (store down) is tried again.
UNAVAILABLE_RETRY_MAX = 5.0
# Fetches of a UID that comes back empty before it is kept in quarantine.
UNREADABLE_ATTEMPTS = 3
# Parsed once by a standby instance so its parser worker is running when it takes over.
_WARM_MAIL = b"From: warm@localhost\r\nSubject: warm-up\r\n\r\nwarm-up\r\n"
_LOOP_ERRORS: tuple[type[Exception], ...] = (NotReady, ImapError, *IMAP_ERRORS)


@dataclass(slots=True)
class MailboxState:
    """What has been handed to the core, persisted per mailbox in ctx.kv.

    `uid` is a watermark: every UID up to it is done. `done` holds UIDs above it that are
    done too (a lower message is still waiting for a retry)."""

    uidvalidity: int | None = None
    uid: int = 0
    done: set[int] = field(default_factory=set)

    def dump(self) -> str:
        return json.dumps(
            {"uidvalidity": self.uidvalidity, "uid": self.uid, "done": sorted(self.done)}
        )

    @classmethod
    def load(cls, text: str | None) -> MailboxState | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                uidvalidity=int(data["uidvalidity"]) if data.get("uidvalidity") else None,
                uid=int(data.get("uid", 0)),
                done={int(x) for x in data.get("done", [])},
            )
        except (ValueError, TypeError, KeyError):
            return None

    def is_done(self, uid: int) -> bool:
        return uid <= self.uid or uid in self.done

    def mark(self, uid: int, pending: set[int]) -> None:
        """`uid` is done; advance the watermark over every done UID below the first pending."""
        self.done.add(uid)
        floor = min(pending) if pending else None
        for u in sorted(self.done):
            if floor is not None and u >= floor:
                break
            self.uid = max(self.uid, u)
        self.done = {u for u in self.done if u > self.uid}

    def mark_all(self, uids: list[int], pending: set[int]) -> None:
        """Every UID of `uids` is done (one watermark pass for all of them)."""
        if not uids:
            return
        self.done.update(uids[:-1])
        self.mark(uids[-1], pending)


@dataclass(slots=True)
class _Batch:
    """Fetched messages and their submits under way (one bool each: may be acknowledged)."""

    messages: list[FetchedMessage]
    outcomes: asyncio.Future[list[bool]]


class EmailConnector(Connector):
    kind: ClassVar[str] = "email"
    identity_kind: ClassVar[str] = "email"
    settings_model: ClassVar[type[ConnectorSettings]] = EmailSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.TEXT, Capability.HTML, Capability.ATTACHMENTS, Capability.SUBJECT}
    )

    @classmethod
    def cli_commands(cls) -> list[CliCommand]:
        return [BACKFILL_COMMAND]

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        super().__init__(name, settings, ctx)
        assert isinstance(settings, EmailSettings)
        self.cfg: EmailSettings = settings
        self.log = ctx.log
        self._imap: ImapConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._state: MailboxState | None = None
        # UIDs whose submit failed: uid -> (attempts, next attempt at, monotonic)
        self._failed: dict[int, tuple[int, float]] = {}
        self._wake = asyncio.Event()
        # (UIDVALIDITY, UIDNEXT) when start() first selected the mailbox: where a first
        # start's "arrived after the channel started" begins
        self._started_at: tuple[int | None, int | None] = (None, None)
        # Mail is parsed in worker processes (off the event loop, with CPU and memory limits)
        self._parser = MailParser(self.cfg, name, ctx.log)
        # Submits go to the core in the order the mails were handed to `_handle` (UID
        # order), whatever order their parses finish in: each waits for the one before.
        self._turn: asyncio.Future[None] | None = None
        # With several gateway instances one polls the mailbox: the holder of this lease.
        # Its cursor is written with the lease's fencing token (a stale holder is refused).
        self._lease = ctx.lease(self._kv_key)
        self._warm: asyncio.Task[None] | None = None

    @property
    def _kv_key(self) -> str:
        return f"imap:{self.cfg.imap.mailbox}"

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        imap = ImapConnection(self.cfg.imap)
        await imap.connect()  # NotReady / AuthFailed propagate to the core
        self._imap = imap
        self._started_at = (imap.uidvalidity, imap.uidnext)
        if self.cfg.imap.move_to:
            try:
                await imap.ensure_mailbox(self.cfg.imap.move_to)
            except IMAP_ERRORS as exc:
                self.log.warning(
                    "email %s: cannot create folder %r: %r", self.name, self.cfg.imap.move_to, exc
                )
        self.log.info(
            "email %s: connected to %s:%s mailbox %r (uidvalidity %s, idle %s)",
            self.name,
            self.cfg.imap.host,
            self.cfg.imap.port,
            self.cfg.imap.mailbox,
            imap.uidvalidity,
            self._use_idle(imap),
        )
        self._task = asyncio.create_task(self._run(), name=f"email-{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            # asyncio.wait, not wait_for: a loop that does not end on time is cancelled
            # and left, never waited on for ever (3.11 can lose a cancellation)
            await asyncio.wait({task}, timeout=self.cfg.imap.timeout + 10)
            if not task.done():
                task.cancel()
            elif not task.cancelled() and (exc := task.exception()) is not None:
                self.log.warning("email %s: receive loop ended with %r", self.name, exc)
        if self._imap is not None:
            await self._imap.close()
            self._imap = None
        await self._lease.release()
        if self._warm is not None:
            self._warm.cancel()
            await asyncio.gather(self._warm, return_exceptions=True)
        await self._parser.close()
        self.log.info("email %s: stopped", self.name)

    def _use_idle(self, imap: ImapConnection) -> bool:
        return self.cfg.imap.idle and imap.has("IDLE")

    # -- the receive loop -------------------------------------------------------------

    async def _run(self) -> None:
        delay = RECONNECT_MIN
        while not self._stopping.is_set():
            if not self._lease.held:
                await self._wait_for_lease()
                continue
            try:
                if self._imap is None:
                    imap = ImapConnection(self.cfg.imap)
                    await imap.connect()
                    self._imap = imap
                    self.log.info("email %s: reconnected", self.name)
                await self._sync(self._imap)
                delay = RECONNECT_MIN
                await self._wait_for_mail(self._imap)
            except LeaseLost:
                self.log.info("email %s: another instance polls the mailbox now", self.name)
                await self._drop_connection()
            except Unavailable:
                # The gateway's store is down (it logs that itself): the mail waits unseen
                # on the server; try again shortly, on the same connection.
                self.log.debug("email %s: the gateway is unavailable; waiting", self.name)
                await self._sleep(UNAVAILABLE_RETRY_MAX)
            except AuthFailed as exc:
                self.log.error("email %s: %s", self.name, exc)
                await self._drop_connection()
                await self._sleep(RECONNECT_MAX)
            except _LOOP_ERRORS as exc:
                if self._stopping.is_set():
                    break
                self.log.warning(
                    "email %s: IMAP problem, reconnecting in %.0fs: %r", self.name, delay, exc
                )
                await self._drop_connection()
                await self._sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
        # leave cleanly: IDLE is done by now, log out
        await self._drop_connection()

    async def _wait_for_lease(self) -> None:
        """Another instance polls this mailbox: hold no connection, forget what this one
        knew (the holder moves the cursor), and wait to take over."""
        await self._drop_connection()
        self._state = None
        self._failed.clear()
        if self._warm is None:  # a standby: start a parser now, so a takeover is quick
            self._warm = asyncio.create_task(self._warm_parser(), name=f"email-{self.name}-warm")
        if await acquire_unless(self._lease, self._stopping):
            self.log.info("email %s: polling the mailbox (lease taken)", self.name)

    async def _warm_parser(self) -> None:
        with contextlib.suppress(Exception):
            await self._parser.parse(_WARM_MAIL)

    async def _drop_connection(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            await imap.close()

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _wait_for_mail(self, imap: ImapConnection) -> None:
        if imap.new_mail:
            return  # announced while the last pass ran: IDLE would not hear of it again
        wait = self.cfg.imap.idle_timeout if self._use_idle(imap) else self.cfg.imap.poll_interval
        if self._failed:
            now = time.monotonic()
            soonest = min(at for _, at in self._failed.values())
            wait = max(0.05, min(wait, soonest - now))
        if self._stopping.is_set():
            return
        if self._use_idle(imap):
            await imap.idle(wait, self._stopping)
        else:
            await self._sleep(wait)

    async def _load_state(self, imap: ImapConnection) -> MailboxState:
        state = self._state or MailboxState.load(await self.ctx.kv.get(self._kv_key))
        current = imap.uidvalidity
        if state is None:
            start = await self._first_start_watermark(imap)
            state = MailboxState(uidvalidity=current, uid=start)
            await self._lease.set(self._kv_key, state.dump())
            self.log.info("email %s: first start, reading from UID %d on", self.name, start + 1)
        elif state.uidvalidity != current:
            self.log.warning(
                "email %s: UIDVALIDITY of %r changed (%s -> %s): resynchronising the whole "
                "mailbox; messages the core already has are dropped as duplicates",
                self.name,
                self.cfg.imap.mailbox,
                state.uidvalidity,
                current,
            )
            state = MailboxState(uidvalidity=current, uid=0)
            self._failed.clear()
            await self._lease.set(self._kv_key, state.dump())
        self._state = state
        return state

    async def _first_start_watermark(self, imap: ImapConnection) -> int:
        """The UID a first start reads after (the rule is in the module docstring)."""
        validity, uidnext = self._started_at
        if validity != imap.uidvalidity or uidnext is None:
            validity, uidnext = imap.uidvalidity, imap.uidnext
        if uidnext is not None:
            arrived_after = uidnext - 1
        else:
            # a server without UIDNEXT: the highest UID now, searched before UNSEEN, so a
            # message landing in between is above it
            everything = await imap.uid_search("ALL")
            arrived_after = everything[-1] if everything else 0
        unseen = await imap.uid_search("UNSEEN")
        return min(arrived_after, unseen[0] - 1) if unseen else arrived_after

    async def _sync(self, imap: ImapConnection) -> None:
        """Fetch and submit every message not handed to the core yet."""
        imap.new_mail = False  # what is announced from here on is looked for next pass
        state = await self._load_state(imap)
        present = [u for u in await imap.uid_search("UID", f"{state.uid + 1}:*") if u > state.uid]
        for gone in set(self._failed) - set(present):
            self._failed.pop(gone, None)  # moved or deleted by someone else meanwhile
        uids = [u for u in present if not state.is_done(u)]
        now = time.monotonic()
        uids = [u for u in uids if u not in self._failed or self._failed[u][1] <= now]
        # Pipelined: while one batch's submits are with the core, the next batch is
        # fetched and its submits started (messages reach the core in UID order), and the
        # previous batch is acknowledged. At most two batches are in flight.
        size = self.cfg.imap.batch_size
        inflight: _Batch | None = None
        try:
            for i in range(0, len(uids), size):
                if self._stopping.is_set():
                    break
                if not self._lease.held:
                    raise LeaseLost(self._kv_key)
                fetched = await imap.fetch(uids[i : i + size])
                previous, inflight = (
                    inflight,
                    _Batch(fetched, asyncio.gather(*(self._handle(m) for m in fetched))),
                )
                if previous is not None:
                    await self._finish_batch(imap, state, previous)
            if inflight is not None:
                last, inflight = inflight, None
                await self._finish_batch(imap, state, last)
        except Exception:
            # the connection broke: let the submits under way settle (so a failed one is
            # recorded for a retry) but acknowledge nothing; the next pass offers them
            # again and the core drops what it already has as duplicates
            if inflight is not None:
                with contextlib.suppress(Exception):
                    await inflight.outcomes
            raise

    async def _finish_batch(self, imap: ImapConnection, state: MailboxState, b: _Batch) -> None:
        """Once a batch's submits have all returned, acknowledge what the core took.

        Only the UIDs whose submit returned are flagged \\Seen (or moved), in one command,
        and only after that is the state persisted, once per batch: a crash in between means
        the next run submits them again and the core drops them as duplicates. Every UID of
        an earlier batch is below every UID of a later one, so the watermark never passes
        a message still in flight."""
        outcomes = await b.outcomes
        done = [m.uid for m, ok in zip(b.messages, outcomes, strict=True) if ok]
        if not done:
            return
        await self._acknowledge(imap, done)
        for uid in done:
            self._failed.pop(uid, None)
        state.mark_all(done, set(self._failed))
        await self._lease.set(self._kv_key, state.dump())

    async def _handle(self, m: FetchedMessage) -> bool:
        """Hand one message to the core. True when it may be acknowledged (submitted, kept
        in quarantine, or our own mail that is skipped); False when it stays unseen for a
        retry (the core could not take anything just now)."""
        before, mine = self._turn, asyncio.get_running_loop().create_future()
        self._turn = mine
        try:
            return await self._handle_in_turn(m, before, mine)
        finally:
            if not mine.done():
                mine.set_result(None)

    async def _handle_in_turn(
        self, m: FetchedMessage, before: asyncio.Future[None] | None, mine: asyncio.Future[None]
    ) -> bool:
        if not m.raw:
            attempts = self._failed.get(m.uid, (0, 0.0))[0] + 1
            if attempts < UNREADABLE_ATTEMPTS:
                self.log.warning(
                    "email %s: UID %d came with no content; left unseen", self.name, m.uid
                )
                self._retry_later(m.uid)
                return False
            return await self._quarantine(
                m, f"the IMAP server returned no content for UID {m.uid} ({attempts} fetches)"
            )
        try:
            parsed = await self._parse(m.raw)
        except PoolUnavailable as exc:  # nothing to do with this mail: read it again later
            self.log.warning("email %s: UID %d not parsed, left unseen: %s", self.name, m.uid, exc)
            self._retry_later(m.uid)
            return False
        except LimitExceeded as exc:  # a mail too costly to read must not loop: keep it
            self.log.warning(
                "email %s: UID %d (%d bytes) is too costly to parse: %s",
                self.name,
                m.uid,
                len(m.raw),
                exc,
            )
            return await self._quarantine(m, f"mail too costly to read: the parser {exc}")
        except Exception as exc:  # a mail our parser chokes on must not loop: keep it
            self.log.warning("email %s: UID %d could not be parsed: %r", self.name, m.uid, exc)
            reason = str(exc) if isinstance(exc, TaskFailed) else f"{type(exc).__name__}: {exc}"
            return await self._quarantine(m, f"unreadable mail: {reason}")
        if before is not None and not before.done():
            # the mail before this one is handed over first (shielded: being cancelled here
            # must not cancel the other mail's turn)
            await asyncio.shield(before)
        if not mine.done():
            mine.set_result(None)
        if isinstance(parsed, ParsedEmail) and parsed.own:
            self.log.info(
                "email %s: UID %d is our own mail (%s): skipped",
                self.name,
                m.uid,
                parsed.external_id,
            )
            return True
        try:
            result = await self.ctx.submit(to_event(parsed))
        except Refused as exc:
            self.log.warning(
                "email %s: UID %d (%s) refused by the gateway and quarantined as %s: %s",
                self.name,
                m.uid,
                parsed.external_id,
                exc.quarantine_id,
                exc.reason,
            )
            return True
        except Unavailable:
            # The gateway logs its own outage once per interval; the mail waits unseen.
            self.log.debug(
                "email %s: UID %d left unseen: the gateway is unavailable", self.name, m.uid
            )
            # Not this mail's fault: tried again every few seconds, so that it is taken
            # soon after the gateway is back, not after a backoff grown during the outage.
            self._retry_later(m.uid, cap=UNAVAILABLE_RETRY_MAX)
            return False
        except Exception as exc:
            self.log.warning(
                "email %s: submit of UID %d (%s) failed, left unseen: %r",
                self.name,
                m.uid,
                parsed.external_id,
                exc,
            )
            self._retry_later(m.uid)
            return False
        self.log.info(
            "email %s: UID %d submitted as %s %s%s",
            self.name,
            m.uid,
            "receipt" if isinstance(parsed, BounceReport) else "message",
            parsed.external_id,
            " (duplicate)" if result.duplicate else "",
        )
        return True

    async def _parse(self, raw: bytes) -> ParsedEmail | BounceReport:
        return await self._parser.parse(raw)

    async def _quarantine(self, m: FetchedMessage, reason: str) -> bool:
        """Keep a mail the gateway cannot take; True (acknowledge it) once it is kept."""
        item = RawItem(
            "message/rfc822",
            m.raw or b"",
            metadata={"uid": m.uid, "mailbox": self.cfg.imap.mailbox},
        )
        try:
            qid = await self.ctx.quarantine(item, reason)
        except Exception as exc:
            self.log.warning(
                "email %s: UID %d could not be quarantined, left unseen: %r", self.name, m.uid, exc
            )
            self._retry_later(m.uid)
            return False
        self.log.warning("email %s: UID %d quarantined as %s", self.name, m.uid, qid)
        return True

    async def parse_raw(self, item: RawItem) -> InboundMessage | DeliveryReceipt:
        """A quarantined mail read again (after a fix or a config change), in the same
        worker processes and with the same limits as live mail."""
        try:
            parsed = await self._parse(item.data)
        except LimitExceeded as exc:
            raise ValueError(f"mail too costly to read: the parser {exc}") from None
        if isinstance(parsed, ParsedEmail) and parsed.own:
            raise ValueError("this is mail the gateway sent itself; it is never ingested")
        return to_event(parsed)

    async def _acknowledge(self, imap: ImapConnection, uids: list[int]) -> None:
        if self.cfg.imap.move_to:
            await imap.move(uids, self.cfg.imap.move_to)
        else:
            await imap.mark_seen(uids)

    def _retry_later(self, uid: int, cap: float = RETRY_MAX) -> None:
        attempts = self._failed.get(uid, (0, 0.0))[0] + 1
        delay = min(self.cfg.imap.retry_interval * 2 ** (attempts - 1), cap)
        self._failed[uid] = (attempts, time.monotonic() + delay)

    # -- sending ----------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        try:
            email, message_id = build_message(message, self.cfg)
        except ComposeError as exc:
            return DeliveryResult.failed(str(exc))
        s = self.cfg.smtp
        kwargs: dict[str, Any] = {
            "hostname": s.host,
            "port": s.port,
            "timeout": s.timeout,
            "use_tls": s.tls,
            "start_tls": bool(s.starttls),
        }
        if s.username:
            kwargs["username"] = s.username
            kwargs["password"] = s.password or ""
        try:
            await aiosmtplib.send(
                email, sender=self.cfg.address, recipients=[message.to.address], **kwargs
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = exc.recipients
            if refusals:
                return _by_code(refusals[0].code, refusals[0].message)
            return DeliveryResult.retry("recipients refused")
        except aiosmtplib.SMTPAuthenticationError as exc:
            # our credentials, not the message: keep it queued until the relay accepts us
            self.log.error(
                "email %s: SMTP authentication failed: %s %s", self.name, exc.code, exc.message
            )
            return DeliveryResult.retry(f"SMTP authentication failed: {exc.code} {exc.message}")
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return DeliveryResult.retry(f"SMTP server unreachable: {exc!r}")
        self.log.info("email %s: sent %s as %s", self.name, message.id, message_id)
        return DeliveryResult.sent(message_id)


def _by_code(code: int, message: str) -> DeliveryResult:
    reason = f"{code} {message}".strip()
    if 500 <= code < 600:
        return DeliveryResult.failed(reason)
    return DeliveryResult.retry(reason)
