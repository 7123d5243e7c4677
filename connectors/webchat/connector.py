"""The `webchat` channel: a website chat widget talking to the gateway over a WebSocket.

Routes (mounted at construction):

- `GET /webchat/{name}/widget.js` — the widget, embedded with one `<script>` tag.
- `GET /webchat/{name}/ws` — the visitor's WebSocket. The `Origin` must be one of
  `allowed_origins` (else 403 before the upgrade), and the first frame must be a `hello`
  within `handshake_timeout` seconds (else the socket is closed with 4408).

Protocol (JSON text frames). Client → gateway:
  `{"type": "hello", "token": str | null}` — first frame; a missing or tampered token
      gets a fresh visitor. Answered by `welcome` (token, history, availability ...).
  `{"type": "message", "client_id": str, "text": str}` — idempotent on `client_id`: a
      resend after a reconnect is acknowledged again and stored once.
  `{"type": "typing", "typing": bool}`
  `{"type": "profile", "name": str?, "email": str?}` — the optional pre-chat form.
Gateway → client:
  `welcome`, `ack` {client_id, message_id, status: "sent"}, `message` (an agent reply, or
  the visitor's own message sent from another tab), `typing` {typing} (an agent),
  `availability` {agents_online}, `profile`, `error` {code, message, client_id?}.

A visitor's token, profile and sockets are the visitor's only state here; messages live
in the core, and `ctx.history` restores them on every (re)connect, in every tab.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from importlib import resources
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from connectors.base import (
    Capability,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryResult,
    Identity,
    InboundMessage,
    OutboundMessage,
    Typing,
)
from connectors.http import fail
from connectors.webchat.settings import WebchatSettings
from connectors.webchat.tokens import TokenSigner, new_visitor_id

KIND = "webchat"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{1,63}$")
# Socket-level flood guard (any frame): a burst of this many, refilled per second.
_FRAME_BURST = 40.0
_FRAME_RATE = 10.0
_SEND_TIMEOUT = 5.0
AVAILABILITY_INTERVAL = 5.0


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parse_iso(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _widget_source() -> bytes:
    return resources.files("connectors.webchat").joinpath("static/widget.js").read_bytes()


class _Socket:
    """One open widget socket: its visitor and a small frame budget."""

    __slots__ = ("allowance", "checked", "origin", "visitor", "ws")

    def __init__(self, ws: web.WebSocketResponse, visitor: str, origin: str | None) -> None:
        self.ws = ws
        self.visitor = visitor
        self.origin = origin
        self.allowance = _FRAME_BURST
        self.checked = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.allowance = min(_FRAME_BURST, self.allowance + (now - self.checked) * _FRAME_RATE)
        self.checked = now
        if self.allowance < 1.0:
            return False
        self.allowance -= 1.0
        return True


class WebchatConnector(Connector):
    kind: ClassVar[str] = KIND
    identity_kind: ClassVar[str] = KIND
    settings_model: ClassVar[type[ConnectorSettings]] = WebchatSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TEXT, Capability.TYPING})

    settings: WebchatSettings

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        super().__init__(name, settings, ctx)
        assert isinstance(settings, WebchatSettings)
        self._signer = TokenSigner(settings.secret.get_secret_value().encode())
        self._any_origin = "*" in settings.allowed_origins
        self._origins = frozenset(settings.allowed_origins)
        self._widget = _widget_source()
        self._sockets: dict[str, set[_Socket]] = {}
        self._profiles: dict[str, dict[str, str]] = {}
        self._sent_at: dict[str, collections.deque[float]] = {}
        self._typing: dict[str, float] = {}  # visitor → when we last forwarded typing=True
        self._agents_online: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        # A frame holds at most max_message_chars characters of up to 4 UTF-8 bytes, JSON
        # escaping aside; anything far larger is closed by aiohttp with 1009.
        self._max_frame = settings.max_message_chars * 6 + 4096
        ctx.add_route("GET", f"/webchat/{name}/widget.js", self.handle_widget)
        ctx.add_route("GET", f"/webchat/{name}/ws", self.handle_ws)

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._poller = asyncio.create_task(self._poll_availability())

    async def stop(self) -> None:
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
            self._poller = None
        sockets = [s for group in self._sockets.values() for s in group]
        await asyncio.gather(
            *(s.ws.close(code=1001, message=b"server shutting down") for s in sockets),
            return_exceptions=True,
        )

    def connected_visitors(self) -> int:
        return len(self._sockets)

    # --- HTTP ----------------------------------------------------------------------------
    async def handle_widget(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self._widget,
            headers={
                "Content-Type": "application/javascript; charset=utf-8",
                "Cache-Control": "public, max-age=300",
                "X-Content-Type-Options": "nosniff",
                "Cross-Origin-Resource-Policy": "cross-origin",
            },
        )

    def origin_allowed(self, origin: str | None) -> bool:
        if self._any_origin:
            return True
        return origin is not None and origin.rstrip("/").lower() in self._origins

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self.origin_allowed(origin):
            fail(
                403,
                "forbidden_origin",
                f"origin {origin or '(none)'} may not open this chat; "
                f"add it to channels[{self.name}].allowed_origins",
            )
        if self._stopping:
            fail(503, "unavailable", "the gateway is shutting down")
        s = self.settings
        ws = web.WebSocketResponse(heartbeat=s.heartbeat, max_msg_size=self._max_frame)
        if not ws.can_prepare(request).ok:
            fail(400, "websocket_required", "open this URL as a WebSocket")
        await ws.prepare(request)
        try:
            hello = await asyncio.wait_for(ws.receive(), s.handshake_timeout)
        except TimeoutError:
            await ws.close(code=4408, message=b"handshake timeout: send a hello frame first")
            return ws
        frame = _json(hello)
        if frame is None or frame.get("type") != "hello":
            if not ws.closed:
                await ws.close(code=4400, message=b"the first frame must be a hello")
            return ws
        visitor, token, renewed = self._identify(frame.get("token"))
        group = self._sockets.setdefault(visitor, set())
        if len(group) >= s.max_sockets_per_visitor:
            if not group:
                self._sockets.pop(visitor, None)
            await self._send(
                ws,
                {
                    "type": "error",
                    "code": "too_many_connections",
                    "message": "This chat is open in too many tabs; close one and reload.",
                },
            )
            await ws.close(code=4429, message=b"too many connections for this visitor")
            return ws
        sock = _Socket(ws, visitor, origin)
        group.add(sock)
        try:
            await self._welcome(sock, token, renewed)
            await self._serve(sock)
        finally:
            group.discard(sock)
            if not group and self._sockets.get(visitor) is group:
                del self._sockets[visitor]
                self._profiles.pop(visitor, None)
                if self._typing.pop(visitor, None) is not None:
                    await self._forward_typing(visitor, False)
        return ws

    def _identify(self, token: Any) -> tuple[str, str, bool]:
        """(visitor id, token, renewed): a token that does not verify mints a new visitor."""
        verified = self._signer.verify(token)
        if verified is not None:
            return verified[0], str(token), False
        visitor = new_visitor_id()
        return visitor, self._signer.mint(visitor), token is not None

    async def _welcome(self, sock: _Socket, token: str, renewed: bool) -> None:
        s = self.settings
        visitor = sock.visitor
        issued = self._signer.verify(token)
        issued_at = issued[1] if issued else int(time.time())
        profile = await self._profile(visitor)
        history = await self._history(visitor, issued_at)
        await self._send(
            sock.ws,
            {
                "type": "welcome",
                "visitor_id": visitor,
                "token": token,
                "renewed": renewed,
                "title": s.title,
                "greeting": s.greeting,
                "prechat": s.prechat_form,
                "profile": profile or None,
                "max_message_chars": s.max_message_chars,
                "agents_online": await self._availability(),
                "history": history,
            },
        )

    async def _serve(self, sock: _Socket) -> None:
        ws = sock.ws
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await self._error(ws, "unsupported", "send JSON text frames")
                    continue
                break
            if not sock.spend():
                await self._error(ws, "flooding", "too many frames; slow down")
                await ws.close(code=4429, message=b"too many frames")
                break
            frame = _json(msg)
            if frame is None:
                await self._error(ws, "invalid_frame", "a frame must be a JSON object")
                continue
            kind = frame.get("type")
            if kind == "message":
                await self._on_message(sock, frame)
            elif kind == "typing":
                await self._on_typing(sock, frame)
            elif kind == "profile":
                await self._on_profile(sock, frame)
            elif kind == "ping":
                await self._send(ws, {"type": "pong"})
            else:
                await self._error(ws, "invalid_frame", f"unknown frame type {str(kind)[:32]!r}")

    # --- frames --------------------------------------------------------------------------
    async def _on_message(self, sock: _Socket, frame: dict[str, Any]) -> None:
        ws, visitor, s = sock.ws, sock.visitor, self.settings
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            await self._error(ws, "invalid_frame", "client_id must be 1-64 of A-Z a-z 0-9 _ -")
            return
        text = frame.get("text")
        if not isinstance(text, str) or not text.strip():
            await self._error(ws, "empty", "the message is empty", client_id)
            return
        if len(text) > s.max_message_chars:
            await self._error(
                ws,
                "too_long",
                f"The message is too long ({len(text)} characters; at most {s.max_message_chars}).",
                client_id,
            )
            return
        window = self._sent_at.setdefault(visitor, collections.deque())
        now = time.monotonic()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= s.rate_per_minute:
            wait = max(1, int(60.0 - (now - window[0]) + 0.999))
            await self._error(
                ws,
                "rate_limited",
                f"You are sending messages too fast; try again in {wait} s.",
                client_id,
                retry_after=wait,
            )
            return
        window.append(now)
        profile = self._profiles.get(visitor) or {}
        email = profile.get("email")
        inbound = InboundMessage(
            external_id=f"{visitor}:{client_id}",
            sender=Identity(KIND, visitor),
            sender_name=profile.get("name") or None,
            text=text,
            extra_identities=[Identity("email", email)] if email else [],
            metadata={"webchat": {"origin": sock.origin}} if sock.origin else {},
        )
        try:
            result = await self.ctx.submit(inbound)
        except ValueError as exc:
            await self._error(ws, "rejected", f"The message was refused: {exc}", client_id)
            return
        except Exception:
            self.ctx.log.exception("webchat submit failed")
            await self._error(
                ws, "unavailable", "The message could not be stored; retrying.", client_id
            )
            return
        if self._typing.pop(visitor, None) is not None:
            await self._forward_typing(visitor, False)
        await self._send(
            ws,
            {
                "type": "ack",
                "client_id": client_id,
                "message_id": result.message_id,
                "conversation_id": result.conversation_id,
                "duplicate": result.duplicate,
                "status": "sent",
            },
        )
        if not result.duplicate:
            echo = {
                "type": "message",
                "id": result.message_id,
                "direction": "in",
                "client_id": client_id,
                "text": text,
                "status": "sent",
                "created_at": _now_iso(),
            }
            await self._push(visitor, echo, skip=sock)

    async def _on_typing(self, sock: _Socket, frame: dict[str, Any]) -> None:
        typing = frame.get("typing") is True
        visitor = sock.visitor
        last = self._typing.get(visitor)
        now = time.monotonic()
        if typing:
            if last is not None and now - last < 3.0:
                return  # already told the agent; refresh at most every 3 s
            self._typing[visitor] = now
        else:
            if last is None:
                return
            del self._typing[visitor]
        await self._forward_typing(visitor, typing)

    async def _forward_typing(self, visitor: str, typing: bool) -> None:
        try:
            await self.ctx.submit(Typing(sender=Identity(KIND, visitor), typing=typing))
        except Exception as exc:  # typing is best effort: never break the socket
            self.ctx.log.debug("typing not forwarded: %s", exc)

    async def _on_profile(self, sock: _Socket, frame: dict[str, Any]) -> None:
        name = frame.get("name")
        email = frame.get("email")
        profile: dict[str, str] = {}
        if name is not None:
            if not isinstance(name, str) or len(name.strip()) > 100:
                await self._error(sock.ws, "invalid_profile", "The name is too long.")
                return
            if name.strip():
                profile["name"] = " ".join(name.split())
        if email is not None:
            if not isinstance(email, str) or (email.strip() and not _EMAIL.match(email.strip())):
                await self._error(
                    sock.ws, "invalid_profile", "That does not look like an email address."
                )
                return
            if email.strip():
                profile["email"] = email.strip().lower()
        current = dict(self._profiles.get(sock.visitor) or {})
        current.update(profile)
        self._profiles[sock.visitor] = current
        try:
            await self.ctx.kv.set(f"profile:{sock.visitor}", json.dumps(current))
        except Exception:
            self.ctx.log.exception("webchat profile not saved")
        await self._push(sock.visitor, {"type": "profile", "profile": current})

    # --- state ---------------------------------------------------------------------------
    async def _profile(self, visitor: str) -> dict[str, str]:
        cached = self._profiles.get(visitor)
        if cached is not None:
            return cached
        profile: dict[str, str] = {}
        try:
            raw = await self.ctx.kv.get(f"profile:{visitor}")
            if raw:
                loaded = json.loads(raw)
                if isinstance(loaded, dict):
                    profile = {k: str(v) for k, v in loaded.items() if k in ("name", "email")}
        except Exception:
            self.ctx.log.exception("webchat profile not loaded")
        self._profiles[visitor] = profile
        return profile

    async def _history(self, visitor: str, issued_at: int) -> list[dict[str, Any]]:
        """What this visitor may see again: their own webchat messages and the replies sent
        on this channel since they first came. A pre-chat email links the visitor to an
        existing contact, but typing an address never reveals that contact's other
        conversations."""
        limit = self.settings.history_limit
        if limit == 0:
            return []
        try:
            rows = await self.ctx.history(Identity(KIND, visitor), limit)
        except Exception:
            self.ctx.log.exception("webchat history not loaded")
            return []
        prefix = f"{visitor}:"
        out: list[dict[str, Any]] = []
        for m in rows:
            direction = m.get("direction")
            if direction == "in":
                ext = m.get("external_id") or ""
                if not isinstance(ext, str) or not ext.startswith(prefix):
                    continue
                out.append(
                    {
                        "id": m.get("id"),
                        "direction": "in",
                        "client_id": ext[len(prefix) :],
                        "text": m.get("text") or "",
                        "status": "sent",
                        "created_at": m.get("created_at"),
                    }
                )
            elif direction == "out":
                if m.get("channel") not in (None, self.name):
                    continue
                created = _parse_iso(m.get("created_at"))
                if created is not None and created < issued_at - 1:
                    continue
                if m.get("status") == "failed":
                    continue
                sender = m.get("sender") or {}
                out.append(
                    {
                        "id": m.get("id"),
                        "direction": "out",
                        "text": m.get("text") or "",
                        "sender_name": sender.get("id") if sender.get("type") == "agent" else None,
                        "created_at": m.get("created_at"),
                    }
                )
        return out

    async def _availability(self) -> int:
        if self._agents_online is None:
            self._agents_online = await self._fetch_availability()
        return self._agents_online

    async def _fetch_availability(self) -> int:
        try:
            info = await self.ctx.availability()
            return int(info.get("agents_online", 0))
        except Exception as exc:
            self.ctx.log.debug("availability unknown: %s", exc)
            return 0

    def _forget_idle_senders(self) -> None:
        """Rate windows outlive the sockets (a reconnect must not reset the limit); drop
        the ones with nothing left in the last minute."""
        cutoff = time.monotonic() - 60.0
        for visitor in [v for v, w in self._sent_at.items() if not w or w[-1] < cutoff]:
            del self._sent_at[visitor]

    async def _poll_availability(self) -> None:
        while not self._stopping:  # not only the cancellation: Python 3.11 can lose it
            await asyncio.sleep(AVAILABILITY_INTERVAL)
            self._forget_idle_senders()
            online = await self._fetch_availability()
            if online != self._agents_online:
                self._agents_online = online
                frame = json.dumps({"type": "availability", "agents_online": online})
                for group in list(self._sockets.values()):
                    for sock in list(group):
                        await self._send_raw(sock.ws, frame)

    # --- outbound ------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Push the reply to every open tab of the visitor. With none open it is still
        sent: the core holds it, and the next connect restores it from history."""
        try:
            frame = {
                "type": "message",
                "id": message.id,
                "direction": "out",
                "text": message.text,
                "sender_name": message.sender_name,
                "created_at": _now_iso(),
            }
            await self._push(message.to.address, frame)
        except Exception:
            self.ctx.log.exception("webchat push failed")
        return DeliveryResult.sent(message.id)

    async def typing(self, to: Identity, conversation_id: str, typing: bool) -> None:
        with contextlib.suppress(Exception):
            await self._push(to.address, {"type": "typing", "typing": bool(typing)})

    async def _push(self, visitor: str, frame: dict[str, Any], skip: _Socket | None = None) -> int:
        group = self._sockets.get(visitor)
        if not group:
            return 0
        data = json.dumps(frame, ensure_ascii=False)
        targets = [s for s in group if s is not skip]
        results = await asyncio.gather(*(self._send_raw(s.ws, data) for s in targets))
        return sum(results)

    async def _send(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> bool:
        return await self._send_raw(ws, json.dumps(frame, ensure_ascii=False))

    async def _send_raw(self, ws: web.WebSocketResponse, data: str) -> bool:
        if ws.closed:
            return False
        try:
            async with asyncio.timeout(_SEND_TIMEOUT):  # not wait_for: 3.11 can lose a cancel
                await ws.send_str(data)
        except (ConnectionError, TimeoutError, RuntimeError):
            return False
        return True

    async def _error(
        self,
        ws: web.WebSocketResponse,
        code: str,
        message: str,
        client_id: str | None = None,
        **extra: Any,
    ) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if client_id is not None:
            frame["client_id"] = client_id
        await self._send(ws, frame | extra)


def _json(msg: Any) -> dict[str, Any] | None:
    if getattr(msg, "type", None) != WSMsgType.TEXT:
        return None
    try:
        data = json.loads(msg.data)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None
