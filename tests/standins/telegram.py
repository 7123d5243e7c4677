"""A local stand-in for the Telegram Bot API (`https://api.telegram.org`).

Methods: `getMe`, `getUpdates` (queued updates, `offset` confirms, `timeout` long-polls),
`setWebhook`, `deleteWebhook`, `getWebhookInfo`, `sendMessage`, `getFile`, and file download
at `/file/bot<token>/<file_path>`. Answers `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": ..., "description": ..., "parameters": {"retry_after": N}}`,
with the HTTP status equal to `error_code`, as Telegram does.

Knobs: `fail_next(method, ...)` (429 with retry_after, 500, 400 ...), `block(chat_id)` (403
"bot was blocked by the user"), `stop()` / `start()`, `requests` (everything received),
`sent` (messages sent), `served` (update ids handed out by getUpdates). Builders:
`user()`, `push_message()`, `push_edit()`, `add_file()`, and `deliver_webhook()` to post
queued updates to the registered webhook the way Telegram does.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .server import Recorded, RestartableServer, Standin

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BOT_ID = 123456789
WEBHOOK_SECRET = "s3cr3t-Webhook_token"

_INT_PARAMS = {"offset", "limit", "timeout", "max_connections", "message_id"}
_JSON_PARAMS = {"allowed_updates", "reply_markup", "entities", "reply_parameters"}
_BOOL_PARAMS = {"drop_pending_updates", "disable_notification", "protect_content"}


@dataclass(slots=True)
class _Failure:
    error_code: int
    description: str
    retry_after: int | None


def _coerce(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _INT_PARAMS:
        return int(value)
    if name in _JSON_PARAMS:
        return json.loads(value)
    if name in _BOOL_PARAMS:
        return value.lower() in ("true", "1")
    if name == "chat_id" and value.lstrip("-").isdigit():
        return int(value)
    return value


class TelegramStandin(Standin):
    def __init__(self, token: str = TOKEN, port: int | None = None) -> None:
        self.token = token
        self.bot_user = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Switchboard",
            "username": "switchboard_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.requests: list[Recorded] = []
        self.pending: list[dict[str, Any]] = []
        self.served: list[int] = []
        self.sent: list[dict[str, Any]] = []
        self.files: dict[str, tuple[str, bytes]] = {}
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] | None = None
        self.answered_callbacks: list[dict[str, Any]] = []
        self._callbacks = 0
        self._failures: dict[str, collections.deque[_Failure]] = collections.defaultdict(
            collections.deque
        )
        self._next_update_id = 1000
        self._message_ids: dict[int, int] = collections.defaultdict(lambda: 100)
        self._new_update = asyncio.Event()
        self._request_seen = asyncio.Event()
        self.server = RestartableServer(self._make_app, port)

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        return app

    # -- knobs ---------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail with this Bot API error."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                500: "Internal Server Error",
                400: "Bad Request: chat not found",
                403: "Forbidden: bot was blocked by the user",
            }.get(error_code, "Error")
        self._failures[method].extend([_Failure(error_code, description, retry_after)] * times)

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: sendMessage to them answers 403."""
        self.blocked.add(chat_id)

    def requests_for(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/" + method)]

    async def wait_request(self, method: str, count: int = 1, within: float = 5.0) -> None:
        """Wait until `method` was called `count` times."""
        async with asyncio.timeout(within):
            while len(self.requests_for(method)) < count:
                self._request_seen.clear()
                await self._request_seen.wait()

    # -- building updates ----------------------------------------------------------------
    @staticmethod
    def user(
        user_id: int = 5550001,
        first_name: str = "Ana",
        last_name: str | None = "García",
        language_code: str | None = "es",
        username: str | None = "ana_g",
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def add_file(self, content: bytes, path: str) -> dict[str, Any]:
        """Store a file; returns the `{file_id, file_unique_id, file_size}` Telegram uses."""
        file_id = "BQAC" + secrets.token_urlsafe(24)
        self.files[file_id] = (path, content)
        return {
            "file_id": file_id,
            "file_unique_id": "AgAD" + secrets.token_urlsafe(6),
            "file_size": len(content),
        }

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (an `update_id` is assigned unless present)."""
        if "update_id" not in update:
            self._next_update_id += 1
            update = {"update_id": self._next_update_id, **update}
        else:
            self._next_update_id = max(self._next_update_id, update["update_id"])
        self.pending.append(update)
        self._new_update.set()
        return update

    def push_message(
        self,
        user: dict[str, Any] | None = None,
        text: str | None = None,
        *,
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
        photo: list[dict[str, Any]] | None = None,
        document: dict[str, Any] | None = None,
        voice: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue a `message` update from `user` in their private chat (or `chat`)."""
        user = user or self.user()
        chat = chat or {
            "id": user["id"],
            "type": "private",
            "first_name": user["first_name"],
            **({"last_name": user["last_name"]} if "last_name" in user else {}),
            **({"username": user["username"]} if "username" in user else {}),
        }
        self._message_ids[chat["id"]] += 1
        message: dict[str, Any] = {
            "message_id": self._message_ids[chat["id"]],
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }
        if text is not None:
            message["text"] = text
        if caption is not None:
            message["caption"] = caption
        if photo is not None:
            message["photo"] = photo
        if document is not None:
            message["document"] = document
        if voice is not None:
            message["voice"] = voice
        return self.push_update({"message": message})

    def push_callback(
        self, user: dict[str, Any], sent: dict[str, Any], data: str
    ) -> dict[str, Any]:
        """Queue a `callback_query` update: `user` pressed the inline keyboard button with
        `data` under the bot's message `sent` (one of `self.sent`)."""
        self._callbacks += 1
        message = {k: v for k, v in sent.items() if not k.startswith("_")}
        query = {
            "id": f"cbq{self._callbacks}",
            "from": user,
            "message": message,
            "chat_instance": "ci-1",
            "data": data,
        }
        return self.push_update({"callback_query": query})

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        self.answered_callbacks.append(params)
        return self._ok(True)

    def push_edit(self, update: dict[str, Any], text: str) -> dict[str, Any]:
        """Queue an `edited_message` update for the message of an earlier update."""
        message = dict(update["message"], text=text, edit_date=int(time.time()) + 1)
        return self.push_update({"edited_message": message})

    # -- the Bot API ---------------------------------------------------------------------
    @staticmethod
    def _ok(result: Any, description: str | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return web.json_response(body)

    @staticmethod
    def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=code)

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        body = await request.read()
        raw: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json" and body:
            raw.update(json.loads(body))
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            raw.update({k: v for k, v in form.items() if isinstance(v, str)})
        return {k: _coerce(k, v) for k, v in raw.items()}, body

    async def _api(self, request: web.Request) -> web.Response:
        params, body = await self._params(request)
        method = request.match_info["method"]
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                params,
            )
        )
        self._request_seen.set()
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        failures = self._failures.get(method)
        if failures:
            f = failures.popleft()
            return self._error(f.error_code, f.description, f.retry_after)
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return self._error(404, "Not Found")
        response: web.Response = await handler(params)
        return response

    async def _m_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok(self.bot_user)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook is not None:
            return self._error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset:  # confirms every update before it
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self.pending and time.monotonic() < deadline:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        batch = self.pending[:limit]
        self.served.extend(u["update_id"] for u in batch)
        return self._ok(batch)

    async def _m_setWebhook(self, params: dict[str, Any]) -> web.Response:
        if not str(params.get("url", "")).startswith("https://"):
            return self._error(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = params
        if params.get("drop_pending_updates"):
            self.pending.clear()
        return self._ok(True, "Webhook was set")

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self.pending.clear()
        return self._ok(True, "Webhook was deleted")

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> web.Response:
        hook = self.webhook or {}
        return self._ok(
            {
                "url": hook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self.pending),
            }
        )

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = params.get("chat_id")
        text = params.get("text") or ""
        if not isinstance(chat_id, int):
            return self._error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return self._error(400, "Bad Request: message is too long")
        self._message_ids[chat_id] += 1
        message = {
            "message_id": self._message_ids[chat_id],
            "from": self.bot_user,
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        self.sent.append({**message, "_params": params, "_at": time.monotonic()})
        return self._ok(message)

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        file_id = params.get("file_id")
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        path, content = self.files[file_id]
        return self._ok(
            {
                "file_id": file_id,
                "file_unique_id": "AgAD" + file_id[-6:],
                "file_size": len(content),
                "file_path": path,
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), b"")
        )
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for file_path, content in self.files.values():
            if file_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return self._error(404, "Not Found")

    # -- webhook delivery, as Telegram does it -------------------------------------------
    async def deliver_webhook(
        self,
        session: aiohttp.ClientSession,
        url: str | None = None,
        *,
        secret: str | None = None,
        body: bytes | None = None,
    ) -> list[int]:
        """POST each queued update to the webhook (or `url`), with the registered secret
        (or `secret`) in X-Telegram-Bot-Api-Secret-Token; an update leaves the queue on a
        2xx answer. Returns the HTTP statuses."""
        hook = self.webhook or {}
        target = url or hook["url"]
        token = secret if secret is not None else hook.get("secret_token")
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        statuses = []
        for update in list(self.pending):
            data = body if body is not None else json.dumps(update).encode()
            async with session.post(target, data=data, headers=headers) as resp:
                statuses.append(resp.status)
                if 200 <= resp.status < 300:
                    self.pending.remove(update)
        return statuses
