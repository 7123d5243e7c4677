"""The Telegram bot channel (python-telegram-bot), in polling or webhook mode.

Inbound updates become `InboundMessage`s (external id `chat_id:message_id`; edits point at
the original with `edits`). The highest update id handled is kept in `ctx.kv`; the polling
offset moves past an update only after `ctx.submit` returned, and a webhook is answered 200
only then. Outbound `sendMessage` goes through a per-chat and global flood limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import json
import warnings
from typing import ClassVar

from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from connectors.base import (
    AuthFailed,
    Capability,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryReceipt,
    DeliveryResult,
    InboundMessage,
    LeaseLost,
    NotReady,
    OutboundMessage,
    Prompt,
    RawItem,
    Refused,
    Unavailable,
    acquire_unless,
)
from connectors.http import Rejected

from .limiter import FloodLimiter
from .settings import TelegramSettings
from .updates import ALLOWED_UPDATES, answer_data, message_ref, to_inbound
from .webhook import read_update

LAST_UPDATE_KEY = "last_update_id"
MAX_TEXT = 4096  # UTF-16 code units per Telegram message


class ChannelMisconfigured(RuntimeError):
    """The channel cannot run as configured (the core reports it as failed, no retry)."""


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split a long text into Telegram-sized parts, at a newline or space when possible."""
    parts: list[str] = []
    rest = text
    while _utf16_len(rest) > limit:
        cut = limit
        while _utf16_len(rest[:cut]) > limit:
            cut -= 1
        for sep in ("\n", " "):
            at = rest.rfind(sep, 0, cut)
            if at > cut // 2:
                cut = at + 1
                break
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


class TelegramConnector(Connector):
    kind: ClassVar[str] = "telegram"
    settings_model: ClassVar[type[ConnectorSettings]] = TelegramSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TEXT})
    identity_kind: ClassVar[str] = "telegram"

    settings: TelegramSettings

    # Pause after a failed poll or submit, doubling up to the maximum.
    retry_initial: ClassVar[float] = 1.0
    retry_max: ClassVar[float] = 30.0

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        if not isinstance(settings, TelegramSettings):
            raise TypeError("TelegramConnector needs TelegramSettings")
        super().__init__(name, settings, ctx)
        timeout = settings.request_timeout
        api = settings.api_base_url
        self.bot = Bot(
            settings.token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=HTTPXRequest(
                connection_pool_size=16,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
                pool_timeout=timeout,
            ),
            get_updates_request=HTTPXRequest(connect_timeout=timeout, read_timeout=timeout),
        )
        self.limiter = FloodLimiter(settings.per_chat_rate, settings.global_rate, shared=ctx.rates)
        self._poller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._fetching = False
        self._last_update_id: int | None = None
        self._update_lock = asyncio.Lock()
        # Polling: one instance of the gateway polls the bot, the holder of this lease; the
        # offset is written with its fencing token. Webhook mode needs none.
        self._lease = ctx.lease("polling")
        if settings.mode == "webhook":
            ctx.add_route("POST", self.webhook_path, self._on_webhook)

    # -- addresses -------------------------------------------------------------------
    @property
    def webhook_path(self) -> str:
        return f"/channels/{self.name}/telegram/webhook"

    @property
    def public_base(self) -> str | None:
        base = self.settings.webhook_base_url or self.ctx.public_url
        return base.rstrip("/") if base else None

    @property
    def webhook_url(self) -> str:
        return f"{self.public_base}{self.webhook_path}"

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.mode == "webhook" and not self.public_base:
            raise ChannelMisconfigured(
                f"telegram channel {self.name}: webhook mode needs webhook_base_url "
                "or the gateway's public_url"
            )
        try:
            await self.bot.initialize()  # getMe
            if self.settings.mode == "webhook":
                await self.bot.set_webhook(
                    self.webhook_url,
                    secret_token=self.settings.webhook_secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                    drop_pending_updates=self.settings.drop_pending_updates,
                )
            else:
                # getUpdates is refused while a webhook is set.
                await self.bot.delete_webhook(
                    drop_pending_updates=self.settings.drop_pending_updates
                )
        except (InvalidToken, Forbidden) as exc:
            raise AuthFailed(f"Telegram refused the bot token: {exc}") from exc
        except BadRequest as exc:  # e.g. setWebhook refuses a non-HTTPS URL: retrying won't help
            raise ChannelMisconfigured(f"Telegram refused the channel setup: {exc}") from exc
        except TelegramError as exc:
            raise NotReady(f"Telegram API not reachable: {exc}") from exc
        self._last_update_id = await self._stored_update_id()
        self._stopping.clear()
        if self.settings.mode == "polling":
            self._poller = asyncio.create_task(self._poll(), name=f"telegram-poll-{self.name}")
        self.ctx.log.info(
            "telegram channel %s ready as @%s (%s)",
            self.name,
            self.bot.username,
            self.settings.mode,
        )

    async def stop(self) -> None:
        self._stopping.set()
        poller, self._poller = self._poller, None
        if poller is not None:
            if self._fetching:  # a long poll holds nothing; a submit in flight finishes
                poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if self.settings.mode == "polling":
            await self._lease.release()
        with contextlib.suppress(TelegramError):
            await self.bot.shutdown()

    # -- inbound ---------------------------------------------------------------------
    async def _stored_update_id(self) -> int | None:
        value = await self.ctx.kv.get(LAST_UPDATE_KEY)
        try:
            return int(value) if value else None
        except ValueError:
            return None

    async def _handled(self, update_id: int) -> None:
        async with self._update_lock:
            if self._last_update_id is None or update_id > self._last_update_id:
                if self.settings.mode == "polling":
                    await self._lease.set(LAST_UPDATE_KEY, str(update_id))  # LeaseLost
                else:
                    await self.ctx.kv.set(LAST_UPDATE_KEY, str(update_id))
                self._last_update_id = update_id

    async def _submit_update(self, update: Update) -> None:
        """Normalise and submit one update. Returns once it is stored, skipped, or kept in
        quarantine (so the offset may advance); raises if the core could not take it now."""
        try:
            message = await self._normalise(update)
        except Exception as exc:  # an update our code chokes on must not block the chat
            data = json.dumps(update.to_dict(), ensure_ascii=False).encode()
            await self._quarantine_update(update.update_id, data, exc)
            return
        if message is None:
            return
        try:
            await self.ctx.submit(message)
            if update.callback_query is not None:  # stop the button's spinner
                with contextlib.suppress(TelegramError):
                    await self.bot.answer_callback_query(update.callback_query.id, text="\u2713")
        except Refused as exc:
            self.ctx.log.warning(
                "telegram %s: update %s refused by the gateway, quarantined as %s: %s",
                self.name,
                update.update_id,
                exc.quarantine_id,
                exc.reason,
            )

    async def _quarantine_update(self, update_id: int, data: bytes, exc: Exception) -> None:
        """Keep an update our code (or the library's parser) cannot read, with the reason."""
        self.ctx.log.exception("telegram %s: update %s could not be read", self.name, update_id)
        item = RawItem("application/json", data, str(update_id))
        qid = await self.ctx.quarantine(item, f"unreadable update: {type(exc).__name__}: {exc}")
        self.ctx.log.warning("telegram %s: update %s quarantined as %s", self.name, update_id, qid)

    async def _normalise(self, update: Update) -> InboundMessage | None:
        return await to_inbound(
            update,
            self.bot,
            max_file_bytes=self.settings.max_file_bytes,
            private_chats_only=self.settings.private_chats_only,
            log=self.ctx.log,
        )

    async def parse_raw(self, item: RawItem) -> InboundMessage | DeliveryReceipt:
        """A quarantined update read again."""
        update = Update.de_json(json.loads(item.data), self.bot)
        message = await self._normalise(update)
        if message is None:
            raise ValueError("this update carries nothing the gateway takes")
        return message

    async def _pause(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _poll(self) -> None:
        backoff = self.retry_initial
        while not self._stopping.is_set():
            if not self._lease.held:
                if not await acquire_unless(self._lease, self._stopping):
                    continue
                # the previous holder moved the offset: start from what it wrote
                while True:
                    try:
                        self._last_update_id = await self._stored_update_id()
                        break
                    except Unavailable:  # the gateway's store is down: wait for it
                        await self._pause(backoff)
                        if self._stopping.is_set():
                            return
                self.ctx.log.info("telegram %s: polling (lease taken)", self.name)
            offset = None if self._last_update_id is None else self._last_update_id + 1
            self._fetching = True
            try:
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=self.settings.poll_timeout,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
            except RetryAfter as exc:
                await self._pause(retry_after_seconds(exc))
                continue
            except TelegramError as exc:  # network, 5xx, Conflict, a revoked token ...
                self.ctx.log.warning("telegram %s: getUpdates failed: %s", self.name, exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.retry_max)
                continue
            finally:
                self._fetching = False
            backoff = self.retry_initial
            for update in updates:
                if self._stopping.is_set() or not self._lease.held:
                    break
                if self._last_update_id is not None and update.update_id <= self._last_update_id:
                    continue  # handled before (Telegram re-sent it)
                try:
                    await self._submit_update(update)
                except Exception:
                    self.ctx.log.exception(
                        "telegram %s: update %s not stored; it will be fetched again",
                        self.name,
                        update.update_id,
                    )
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self.retry_max)
                    break
                try:
                    await self._handled(update.update_id)
                except LeaseLost:
                    self.ctx.log.info("telegram %s: another instance polls now", self.name)
                    break
                except Unavailable:  # stored, offset not written: fetched again, deduplicated
                    await self._pause(backoff)
                    break

    async def _on_webhook(self, request: web.Request) -> web.StreamResponse:
        try:
            data = await read_update(
                request,
                secret=self.settings.webhook_secret or "",
                limit=self.ctx.max_body_bytes,
            )
        except Rejected as rejected:
            self.ctx.log.warning(
                "telegram %s webhook refused (%s): %s", self.name, rejected.status, rejected.reason
            )
            return rejected.response()
        update_id: int = data["update_id"]
        try:
            try:
                update = Update.de_json(data, self.bot)
            except Exception as exc:
                # Signed by Telegram but beyond the library's parser (e.g. a sticker without
                # the fields it requires): a refused update is retried, then dropped unseen.
                raw = json.dumps(data, ensure_ascii=False).encode()
                await self._quarantine_update(update_id, raw, exc)
            else:
                await self._submit_update(update)
        except Exception:
            self.ctx.log.exception("telegram %s: could not submit update", self.name)
            # Telegram delivers it again later.
            return Rejected(503, "temporarily unable to accept the update").response()
        await self._handled(update_id)
        return web.json_response({"ok": True})

    # -- outbound --------------------------------------------------------------------
    def _chat_id(self, message: OutboundMessage) -> int | str:
        chat = message.metadata.get("telegram_chat_id") or message.to.address
        text = str(chat)
        return int(text) if text.lstrip("-").isdigit() else text

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        if not message.text.strip():
            return DeliveryResult.failed("nothing to send: empty text")
        chat_id = self._chat_id(message)
        first_id: str | None = None
        parts = split_text(message.text)
        async with self.limiter.turn(chat_id):
            for i, part in enumerate(parts):
                if not await self.limiter.acquire(chat_id, self.settings.max_send_wait):
                    return DeliveryResult.retry(
                        "telegram flood limit: too many messages queued for this chat",
                        retry_after=max(self.limiter.next_free(chat_id), 1.0),
                    )
                markup = _keyboard(message.prompt) if i == len(parts) - 1 else None
                result = await self._send_part(chat_id, part, markup)
                if isinstance(result, DeliveryResult):
                    return result
                first_id = first_id or result
        return DeliveryResult.sent(first_id)

    async def _send_part(
        self, chat_id: int | str, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> str | DeliveryResult:
        try:
            sent = await self.bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            await self.limiter.pause_everywhere(chat_id, seconds)
            return DeliveryResult.retry(f"telegram flood control: {exc}", retry_after=seconds)
        except Forbidden as exc:  # the user blocked the bot, or never started it
            return DeliveryResult.failed(f"telegram: {exc.message}")
        except ChatMigrated as exc:
            return DeliveryResult.failed(f"telegram: group moved to chat {exc.new_chat_id}")
        except BadRequest as exc:
            return DeliveryResult.failed(f"telegram: {exc.message}")
        except InvalidToken as exc:
            return DeliveryResult.failed(f"telegram: bot token refused: {exc.message}")
        except (TimedOut, NetworkError) as exc:
            return DeliveryResult.retry(f"telegram unreachable: {exc.message}")
        except TelegramError as exc:
            return DeliveryResult.failed(f"telegram: {exc.message}")
        return message_ref(sent.chat.id, sent.message_id)


def _keyboard(prompt: Prompt | None) -> InlineKeyboardMarkup | None:
    """A survey's choices as an inline keyboard (at most 6 buttons a row)."""
    if prompt is None or not prompt.choices:
        return None
    buttons = [
        InlineKeyboardButton(c.label, callback_data=answer_data(prompt.id, c.value))
        for c in prompt.choices
    ]
    rows = [buttons[i : i + 6] for i in range(0, len(buttons), 6)]
    return InlineKeyboardMarkup(rows)
