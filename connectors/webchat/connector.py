"""The `webchat` channel: a website chat widget talking to the gateway over a WebSocket.

Routes (mounted at construction):

- `GET /webchat/{name}/widget.js` — the widget, embedded with one `<script>` tag.
- `GET /webchat/{name}/invitations` — the proactive invitation rules (`invitations` in
  the settings) offered now, read by the widget on load and again just before it shows
  one; it shows the first whose page URL, time on page and visitor attributes hold (issue
  15). `available` says whether someone can answer: the channel is open and an agent who
  takes its chats is online (as last told by the core: no store query per request); while
  not, only rules with `also_when_unavailable` are offered. Nothing is stored until the
  visitor writes.
- `POST /webchat/{name}/invitations/{invitation}/shown` — the widget showed that
  invitation (counted by the core, as its answer is); no body, `204`. Allowed origins only
  (403), rate-limited per client address (429), an unknown invitation is 404.
- `GET /webchat/{name}/ws` — the visitor's WebSocket. The `Origin` must be one of
  `allowed_origins` (else 403 before the upgrade), and the first frame must be a `hello`
  within `handshake_timeout` seconds (else the socket is closed with 4408).

Protocol (JSON text frames). Client → gateway:
  `{"type": "hello", "token": str | null, "language": str?}` — first frame; a missing,
      tampered or expired token, or one minted for another origin, gets a fresh visitor
      (`renewed`, `renewed_reason`). Answered by `welcome` (a renewed token, history ...).
  `{"type": "message", "client_id": str, "text": str}` — idempotent on `client_id`: a
      resend after a reconnect is acknowledged again and stored once.
  `{"type": "typing", "typing": bool}`
  `{"type": "profile", "name": str?, "email": str?}` — the optional pre-chat form. The
      email is only a claim: the visitor stays its own contact ("claims to be ...") until it
      proves the address with the code mailed to it after its first message.
  `{"type": "verify", "code": str}` — that code; `{"type": "verify_resend"}` — a new one.
  `{"type": "answer", "client_id": str, "prompt": str, "value": str?, "comment": str?}` —
      a survey button clicked, or the comment after it (answered by `answered`).
  `{"type": "suggest", "id": str, "text": str}` — knowledge-base articles for what the
      visitor is typing (answered by `suggestions` {id, items [{slug, language, title, url,
      snippet [[text, marked]]}], texts}); only when `welcome.suggest` is true.
  `{"type": "portal"}` — a link to the customer portal (answered by `portal` {url, label},
      url null while the visitor has no contact); `welcome.portal` says whether it is on
      and `welcome.portal_link` carries one already for a visitor who has written before.
  `{"type": "suggestion", "event": "shown"|"clicked"|"answered", "items": [{slug,
      language}], "helpful": bool?}` — what the visitor did with them (recorded by the core).
  A `message` may carry `suggestions` [{slug, language}]: the articles shown before the
      visitor chose to write anyway (kept on the message as `kb_suggestions`).
  A `message` may carry `invitation` (a configured invitation's name): the visitor answers
      that invitation; kept on the message and as the contact attribute `invited_by`, and
      counted as answered (once: not for a resend).
Gateway → client:
  `welcome`, `ack` {client_id, message_id, status: "sent"}, `message` (an agent reply, or
  the visitor's own message sent from another tab; a survey carries `prompt` {id, choices
  [{value, label}], comment, texts}), `typing` {typing} (an agent),
  `availability` {agents_online}, `status` {state: closed/waiting/served, text (in the
      visitor's language), opens_at, opens_time, position, estimated_wait} (where the visitor
      stands; also in `welcome`), `profile`, `token` {token} (renewed while in use),
  `verification` {status, email, attempts_left?, retry_after?}, `error` {code, message,
  client_id?}.

A visitor's token, profile and sockets are the visitor's only state here; messages live
in the core, and `ctx.history` restores them on every (re)connect, in every tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from importlib import resources
from typing import Any, ClassVar, Literal, NoReturn

from aiohttp import WSMsgType, web

from connectors.base import (
    Answer,
    Capability,
    Choice,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryResult,
    Identity,
    InboundMessage,
    OutboundMessage,
    Prompt,
    Refused,
    Typing,
    Unavailable,
    VerificationResult,
    VisitorLeft,
    WaitStatus,
)
from connectors.http import (
    ApiError,
    JsonTooComplex,
    MalformedJson,
    client_key,
    fail,
    loads_json,
    printable,
)
from connectors.webchat.settings import WebchatSettings
from connectors.webchat.tokens import TokenSigner, VisitorToken, new_visitor_id, origin_tag

KIND = "webchat"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{1,63}$")
# Socket-level flood guard (any frame): a burst of this many, refilled per second.
_FRAME_BURST = 40.0
_FRAME_RATE = 10.0
_SEND_TIMEOUT = 5.0
AVAILABILITY_INTERVAL = 5.0
# Seconds after which the widget sends a message again that the gateway could not store.
UNAVAILABLE_RETRY = 2
# A socket in use sends its visitor a renewed token at most this often.
TOKEN_RENEW_INTERVAL = 60.0
_CODE = re.compile(r"^\s*[0-9]{6}\s*$")
REFUSAL_LOG_INTERVAL = 60.0
# Invitations reported shown per client address per minute (more: 429, not counted).
SHOWN_PER_MINUTE = 60


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

    __slots__ = (
        "allowance",
        "browser_language",
        "checked",
        "issued_at",
        "language",
        "origin",
        "renewed_at",
        "visitor",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        visitor: str,
        origin: str | None,
        issued_at: int = 0,
        language: str = "en",
    ) -> None:
        self.ws = ws
        self.visitor = visitor
        self.origin = origin
        self.issued_at = issued_at
        self.language = language
        # The browser's own language tag (e.g. "de-AT"), kept on the contact so the core
        # writes to the visitor in it (`browser_language`).
        self.browser_language: str | None = None
        self.renewed_at = time.monotonic()
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
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.TEXT, Capability.TYPING, Capability.WAIT_STATUS, Capability.LOCAL_SESSIONS}
    )
    refusals_reach_sender: ClassVar[bool] = True  # the widget shows the refusal at once

    settings: WebchatSettings

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        super().__init__(name, settings, ctx)
        assert isinstance(settings, WebchatSettings)
        self._signer = TokenSigner(settings.secret.get_secret_value().encode())
        self._any_origin = "*" in settings.allowed_origins
        self._origins = frozenset(settings.allowed_origins)
        self._widget = _widget_source()
        self._sockets: dict[str, set[_Socket]] = {}
        # Where each visitor stands (the core's `wait_status`), and the channel's own state
        # before anyone writes (closed until ...): shown on every (re)connect.
        self._wait: dict[str, WaitStatus] = {}
        self._channel_status: WaitStatus | None = None
        self._fetched_status: WaitStatus | None = None
        self._profiles: dict[str, dict[str, str]] = {}
        # Messages per visitor per minute, counted across the gateway's instances.
        self._rates = ctx.rate_limiter()
        self._typing: dict[str, float] = {}  # visitor → when we last forwarded typing=True
        self._wrote: set[str] = set()  # visitors who sent a message while connected here
        self._leaving: dict[str, asyncio.Task[None]] = {}  # visitor → its departure timer
        self._agents_online: int | None = None
        self._availability_lock = asyncio.Lock()  # one fetch for the first requests at once
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        self._open_total = 0  # sockets open or opening, hello or not
        self._open_by_address: dict[str, int] = {}
        self._refusals = 0
        self._refusals_logged = float("-inf")
        # A frame holds at most max_message_chars characters of up to 4 UTF-8 bytes, JSON
        # escaping aside; anything far larger is closed by aiohttp with 1009.
        self._max_frame = settings.max_message_chars * 6 + 4096
        ctx.add_route("GET", f"/webchat/{name}/widget.js", self.handle_widget)
        ctx.add_route("GET", f"/webchat/{name}/ws", self.handle_ws)
        ctx.add_route("GET", f"/webchat/{name}/invitations", self.handle_invitations)
        ctx.add_route(
            "POST", f"/webchat/{name}/invitations/{{invitation}}/shown", self.handle_shown
        )

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._poller = asyncio.create_task(self._poll_availability())

    async def stop(self) -> None:
        self._stopping = True
        for task in self._leaving.values():  # shutting down is not the visitors leaving
            task.cancel()
        self._leaving.clear()
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

    async def handle_invitations(self, request: web.Request) -> web.StreamResponse:
        """The invitation rules offered now, as the widget evaluates them (nothing here is
        secret; a page on an allowed origin may read them). Answered from the availability
        the core last told this connector: no store query per page view."""
        headers = self._cors(request.headers.get("Origin"))
        if headers is None:
            return _forbidden_origin()
        # Cached no longer than the availability it tells is fresh.
        headers["Cache-Control"] = f"public, max-age={int(AVAILABILITY_INTERVAL)}"
        available = await self._someone_available()
        body = {
            "available": available,
            "invitations": [
                {
                    "name": inv.name,
                    "url": inv.when.url,
                    "seconds_on_page": inv.when.seconds_on_page,
                    "attributes": inv.when.attributes,
                    "text": inv.text,
                }
                for inv in self.settings.invitations
                if available or inv.when.also_when_unavailable
            ],
        }
        return web.json_response(body, headers=headers)

    async def handle_shown(self, request: web.Request) -> web.StreamResponse:
        """The widget showed an invitation: counted (`ctx.invitation_event`)."""
        headers = self._cors(request.headers.get("Origin"), required=True)
        if headers is None:
            return _forbidden_origin()
        waiting = await self._rates.window(
            f"webchat-shown:{client_key(request.remote)}", SHOWN_PER_MINUTE, 60.0
        )
        if waiting > 0:
            headers["Retry-After"] = str(max(1, int(waiting + 0.999)))
            return web.json_response(
                {"error": {"code": "rate_limited", "message": "too many reports; slow down"}},
                status=429,
                headers=headers,
            )
        name = request.match_info["invitation"]
        if not any(inv.name == name for inv in self.settings.invitations):
            return web.json_response(
                {"error": {"code": "not_found", "message": "no such invitation"}},
                status=404,
                headers=headers,
            )
        self._count_invitation(name, "shown")
        return web.Response(status=204, headers=headers)

    def _cors(self, origin: str | None, required: bool = False) -> dict[str, str] | None:
        """The headers answering a page on an allowed origin; None: the origin is not
        allowed. Without an `Origin` (not a browser's cross-site request) the rules may
        still be read, but `required` refuses it unless every origin is allowed."""
        headers = {"X-Content-Type-Options": "nosniff"}
        if origin is None:
            return None if required and not self.origin_allowed(None) else headers
        if not self.origin_allowed(origin):
            return None
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
        return headers

    async def _someone_available(self) -> bool:
        """Someone can answer a chat now: the channel is open and an agent who takes its
        chats is online."""
        online = await self._availability()
        closed = self._channel_status is not None and self._channel_status.state == "closed"
        return online > 0 and not closed

    def _count_invitation(self, name: str, event: Literal["shown", "answered"]) -> None:
        try:
            self.ctx.invitation_event(name, event)
        except Exception:  # a count, never a failure of the chat
            self.ctx.log.exception("invitation not counted")

    def origin_allowed(self, origin: str | None) -> bool:
        if self._any_origin:
            return True
        return origin is not None and origin.rstrip("/").lower() in self._origins

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        """The visitor's socket, counted against the per-address and total caps from the
        request on, before the hello: one over a cap is refused at once, before anything
        is allocated for it."""
        s = self.settings
        address = client_key(request.remote)
        if self._open_total >= s.max_sockets:
            self._refused("the channel's max_sockets")
            _refuse(503, "busy", "The chat is busy; try again in a moment.")
        if self._open_by_address.get(address, 0) >= s.max_sockets_per_address:
            self._refused("max_sockets_per_address")
            _refuse(429, "too_many_connections", "Too many chat connections from your address.")
        self._open_total += 1
        self._open_by_address[address] = self._open_by_address.get(address, 0) + 1
        try:
            return await self._handle_ws(request)
        finally:
            self._open_total -= 1
            left = self._open_by_address[address] - 1
            if left:
                self._open_by_address[address] = left
            else:
                del self._open_by_address[address]

    def _refused(self, cap: str) -> None:
        """Refusals are logged once per interval with their count, not one by one."""
        self._refusals += 1
        now = time.monotonic()
        if now - self._refusals_logged >= REFUSAL_LOG_INTERVAL:
            self.ctx.log.warning(
                "chat sockets refused: %s reached (%d since the last such line)",
                cap,
                self._refusals,
            )
            self._refusals, self._refusals_logged = 0, now

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not origin.isascii():
            # An origin is ASCII (RFC 6454 serialises IDNs as punycode): this is not a browser.
            fail(403, "forbidden_origin", "the Origin header is not ASCII")
        if not self.origin_allowed(origin):
            fail(
                403,
                "forbidden_origin",
                f"origin {printable(origin or '(none)')[:200]} may not open this chat; "
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
        try:
            frame = _json(hello)
        except JsonTooComplex as exc:
            await _close_hostile(ws, exc)
            return ws
        if frame is None or frame.get("type") != "hello":
            if not ws.closed:
                await ws.close(code=4400, message=b"the first frame must be a hello")
            return ws
        visitor, token, issued_at, refused = self._identify(frame.get("token"), origin)
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
        sock = _Socket(ws, visitor, origin, issued_at, _language(frame.get("language")))
        tag = frame.get("language")
        if isinstance(tag, str) and re.fullmatch(
            r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,3}", tag
        ):
            sock.browser_language = tag
        group.add(sock)
        leaving = self._leaving.pop(visitor, None)
        if leaving is not None:
            leaving.cancel()  # back (a reload, another page): not gone
        try:
            await self._welcome(sock, token, refused)
            await self._serve(sock)
        finally:
            group.discard(sock)
            if not group and self._sockets.get(visitor) is group:
                del self._sockets[visitor]
                self._profiles.pop(visitor, None)
                if self._typing.pop(visitor, None) is not None:
                    await self._forward_typing(visitor, False)
                if visitor in self._wrote and not self._stopping:
                    self._leaving[visitor] = asyncio.create_task(self._left(visitor, time.time()))
        return ws

    async def _left(self, visitor: str, at: float) -> None:
        """The visitor's last socket closed at `at`: if it stays closed for `abandon_after`,
        tell the core that the visitor left."""
        await asyncio.sleep(self.settings.abandon_after)
        if self._leaving.get(visitor) is asyncio.current_task():
            del self._leaving[visitor]
        if visitor in self._sockets:
            return
        self._wrote.discard(visitor)
        try:
            await self.ctx.submit(VisitorLeft(Identity(KIND, visitor), at))
        except Exception:
            self.ctx.log.exception("webchat departure not recorded")

    def _identify(self, token: Any, origin: str | None) -> tuple[str, str, int, str | None]:
        """(visitor id, renewed token, issued_at, why the given token was refused). A token
        that does not verify, was minted for another origin or has expired (`token_ttl`
        after its last use) is refused: the socket gets a new visitor. A valid one is
        renewed: each use slides its expiry."""
        now = int(self.ctx.clock())
        parsed = self._signer.verify(token)
        refused: str | None = None
        if parsed is None:
            refused = None if token is None else "invalid"
        elif parsed.origin_tag != origin_tag(origin):
            refused = "origin"
        elif now - parsed.seen_at > self.settings.token_ttl or parsed.seen_at > now + 300:
            refused = "expired"
        else:
            return self._renew(parsed, origin, now)
        if refused is not None:
            self.ctx.log.debug("webchat token refused", extra={"reason": refused})
        visitor = new_visitor_id()
        return visitor, self._signer.mint(visitor, now, origin, now), now, refused

    def _renew(
        self, parsed: VisitorToken, origin: str | None, now: int
    ) -> tuple[str, str, int, str | None]:
        token = self._signer.mint(parsed.visitor_id, parsed.issued_at, origin, now)
        return parsed.visitor_id, token, parsed.issued_at, None

    async def _welcome(self, sock: _Socket, token: str, refused: str | None) -> None:
        s = self.settings
        visitor = sock.visitor
        profile = await self._profile(visitor)
        history = await self._history(visitor, sock.issued_at)
        await self._send(
            sock.ws,
            {
                "type": "welcome",
                "visitor_id": visitor,
                "token": token,
                "renewed": refused is not None,
                "renewed_reason": refused,
                "title": s.title,
                "greeting": s.greeting,
                "prechat": s.prechat_form,
                "profile": _public_profile(profile) or None,
                "verification": _verification_state(profile),
                "max_message_chars": s.max_message_chars,
                "agents_online": await self._availability(),
                "status": self._status_frame(visitor, sock.language),
                "history": history,
                "suggest": self.ctx.suggest is not None,
                # Issue 15: "see my requests", once the visitor has a contact.
                "portal": self.ctx.portal_link is not None,
                "portal_link": await self._portal_link(visitor, sock.language),
            },
        )

    async def _portal_link(self, visitor: str, language: str) -> dict[str, str] | None:
        if self.ctx.portal_link is None:
            return None
        try:
            return await self.ctx.portal_link(Identity(KIND, visitor), language)
        except Exception:  # a help, never a failure of the chat
            self.ctx.log.exception("portal link not made")
            return None

    async def _on_portal(self, sock: _Socket) -> None:
        link = await self._portal_link(sock.visitor, sock.language)
        await self._send(sock.ws, {"type": "portal", **(link or {"url": None})})

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
            try:
                frame = _json(msg)
            except JsonTooComplex as exc:
                await _close_hostile(ws, exc)
                break
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
            elif kind == "verify":
                await self._on_verify(sock, frame)
            elif kind == "verify_resend":
                await self._request_code(sock)
            elif kind == "answer":
                await self._on_answer(sock, frame)
            elif kind == "suggest":
                await self._on_suggest(sock, frame)
            elif kind == "suggestion":
                await self._on_suggestion(sock, frame)
            elif kind == "portal":
                await self._on_portal(sock)
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
        waiting = await self._rates.window(f"webchat:{visitor}", s.rate_per_minute, 60.0)
        if waiting > 0:
            wait = max(1, int(waiting + 0.999))
            await self._error(
                ws,
                "rate_limited",
                f"You are sending messages too fast; try again in {wait} s.",
                client_id,
                retry_after=wait,
            )
            return
        profile = self._profiles.get(visitor) or {}
        email = profile.get("email")
        metadata: dict[str, Any] = {"webchat": {"origin": sock.origin}} if sock.origin else {}
        shown = _article_refs(frame.get("suggestions"))
        if shown:  # the articles suggested before the visitor chose to write anyway
            metadata["kb_suggestions"] = shown
        attributes = {"browser_language": sock.browser_language} if sock.browser_language else {}
        invited = frame.get("invitation")
        if isinstance(invited, str) and any(
            inv.name == invited for inv in self.settings.invitations
        ):  # the visitor answers this invitation (an unknown name is ignored)
            metadata["invitation"] = invited
            attributes["invited_by"] = invited
        inbound = InboundMessage(
            external_id=f"{visitor}:{client_id}",
            sender=Identity(KIND, visitor),
            sender_name=profile.get("name") or None,
            text=text,
            extra_identities=[Identity("email", email)] if email else [],
            metadata=metadata,
            contact_attributes=attributes,
        )
        try:
            result = await self.ctx.submit(inbound)
        except Refused as exc:
            await self._error(ws, "rejected", f"The message was refused: {exc.reason}", client_id)
            return
        except Unavailable:
            # The widget keeps the message and sends it again (idempotent on client_id).
            await self._error(
                ws,
                "unavailable",
                "The chat cannot store messages right now; yours is sent again shortly.",
                client_id,
                retry_after=UNAVAILABLE_RETRY,
            )
            return
        except Exception:
            self.ctx.log.exception("webchat submit failed")
            await self._error(
                ws, "unavailable", "The message could not be stored; retrying.", client_id
            )
            return
        self._wrote.add(visitor)
        if "invitation" in metadata and not result.duplicate:
            self._count_invitation(metadata["invitation"], "answered")
        if self._typing.pop(visitor, None) is not None:
            await self._forward_typing(visitor, False)
        await self._renew_in_use(sock)
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
        if email and email not in (profile.get("verified"), profile.get("asked_for")):
            await self._request_code(sock)

    async def _on_suggest(self, sock: _Socket, frame: dict[str, Any]) -> None:
        """Articles for what the visitor is typing (the widget asks, debounced)."""
        ident, text = frame.get("id"), frame.get("text")
        if (
            not isinstance(ident, str)
            or not _CLIENT_ID.match(ident)
            or not isinstance(text, str)
            or len(text) > _SUGGEST_CHARS
        ):
            await self._error(sock.ws, "invalid_frame", "a suggest frame needs id and text")
            return
        result: dict[str, Any] = {"items": []}
        if self.ctx.suggest is not None and text.strip():
            try:
                async with asyncio.timeout(_SUGGEST_TIMEOUT):
                    result = await self.ctx.suggest(text, sock.language)
            except Exception as exc:  # suggestions are a help, never a failure
                self.ctx.log.debug("suggestions unavailable: %s", exc)
        await self._send(sock.ws, {"type": "suggestions", "id": ident, **result})

    async def _on_suggestion(self, sock: _Socket, frame: dict[str, Any]) -> None:
        """What the visitor did with the suggestions: shown, clicked, answered (helpful)."""
        event, refs = frame.get("event"), _article_refs(frame.get("items"))
        if event not in ("shown", "clicked", "answered") or not refs:
            await self._error(sock.ws, "invalid_frame", "a suggestion frame needs event and items")
            return
        data: dict[str, Any] = {"items": refs}
        if event == "answered":
            data["helpful"] = frame.get("helpful") is True
        try:
            await self.ctx.suggestion_event(Identity(KIND, sock.visitor), str(event), data)
        except Exception:
            self.ctx.log.exception("suggestion event not recorded")

    async def _on_answer(self, sock: _Socket, frame: dict[str, Any]) -> None:
        """A click on a survey button, or the comment typed after it."""
        ws, visitor = sock.ws, sock.visitor
        client_id, prompt = frame.get("client_id"), frame.get("prompt")
        value, comment = frame.get("value"), frame.get("comment")
        if (
            not isinstance(client_id, str)
            or not _CLIENT_ID.match(client_id)
            or not isinstance(prompt, str)
            or not _CLIENT_ID.match(prompt)
            or (value is not None and (not isinstance(value, str) or len(value) > 16))
            or (comment is not None and not isinstance(comment, str))
            or (value is None and not (isinstance(comment, str) and comment.strip()))
        ):
            await self._error(
                ws, "invalid_frame", "an answer needs client_id, prompt and value or comment"
            )
            return
        if isinstance(comment, str) and len(comment) > self.settings.max_message_chars:
            await self._error(ws, "too_long", "The comment is too long.", client_id)
            return
        inbound = InboundMessage(
            external_id=f"{visitor}:{client_id}",
            sender=Identity(KIND, visitor),
            text=value if value is not None else str(comment),
            answer=Answer(prompt, value, comment),
        )
        try:
            await self.ctx.submit(inbound)
        except Exception:
            self.ctx.log.exception("webchat answer not taken")
            await self._error(ws, "unavailable", "The answer could not be stored.", client_id)
            return
        await self._push(
            visitor,
            {
                "type": "answered",
                "client_id": client_id,
                "prompt": prompt,
                "value": value,
                "comment": comment,
            },
        )

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
        current = dict(await self._profile(sock.visitor))
        current.update(profile)
        await self._save_profile(sock.visitor, current)
        await self._push(sock.visitor, {"type": "profile", "profile": _public_profile(current)})
        state = _verification_state(current)
        if state is not None:
            await self._push(sock.visitor, {"type": "verification", **state})

    async def _save_profile(self, visitor: str, profile: dict[str, str]) -> None:
        self._profiles[visitor] = profile
        try:
            await self.ctx.kv.set(f"profile:{visitor}", json.dumps(profile))
        except Exception:
            self.ctx.log.exception("webchat profile not saved")

    # --- proving the pre-chat email ------------------------------------------------------
    async def _request_code(self, sock: _Socket) -> None:
        """Ask the core to mail a code to the claimed address; tell every tab what came of
        it. Sent once the visitor has a conversation (after its first message), and again on
        request. The answer is the same whether or not a customer holds the address."""
        visitor = sock.visitor
        profile = dict(await self._profile(visitor))
        email = profile.get("email")
        if not email or email == profile.get("verified"):
            await self._error(sock.ws, "invalid_frame", "There is no address to confirm.")
            return
        try:
            result = await self.ctx.verify_start(
                Identity(KIND, visitor),
                Identity("email", email),
                sock.language,
                self.settings.verify_via,
            )
        except Exception:
            self.ctx.log.exception("webchat verification not started")
            await self._error(sock.ws, "unavailable", "The code could not be sent; try again.")
            return
        profile["asked_for"] = email  # asked once by itself; again only on request
        if result.status == "sent":
            profile["code_for"] = email
        await self._save_profile(visitor, profile)
        await self._push(visitor, _verification_frame(email, result))

    async def _on_verify(self, sock: _Socket, frame: dict[str, Any]) -> None:
        visitor = sock.visitor
        code = frame.get("code")
        profile = dict(await self._profile(visitor))
        email = profile.get("code_for")
        if not isinstance(code, str) or not _CODE.match(code) or not email:
            await self._error(sock.ws, "invalid_code", "Type the 6-digit code from the email.")
            return
        try:
            result = await self.ctx.verify_confirm(Identity(KIND, visitor), code)
        except Exception:
            self.ctx.log.exception("webchat verification failed")
            await self._error(sock.ws, "unavailable", "The code could not be checked; try again.")
            return
        if result.status == "verified":
            profile["verified"] = email
            profile.pop("code_for", None)
            await self._save_profile(visitor, profile)
        elif result.status in ("expired", "none"):
            profile.pop("code_for", None)
            await self._save_profile(visitor, profile)
        await self._push(visitor, _verification_frame(email, result))

    async def _renew_in_use(self, sock: _Socket) -> None:
        """Sliding expiry for a long-open socket: its visitor's token is renewed as it is used."""
        now = time.monotonic()
        if now - sock.renewed_at < TOKEN_RENEW_INTERVAL:
            return
        sock.renewed_at = now
        at = int(self.ctx.clock())
        token = self._signer.mint(sock.visitor, sock.issued_at, sock.origin, at)
        await self._send(sock.ws, {"type": "token", "token": token})

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
                    profile = {k: str(v) for k, v in loaded.items() if k in _PROFILE_KEYS}
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
                item: dict[str, Any] = {
                    "id": m.get("id"),
                    "direction": "out",
                    "text": m.get("text") or "",
                    "sender_name": sender.get("id") if sender.get("type") == "agent" else None,
                    "created_at": m.get("created_at"),
                }
                prompt = m.get("prompt")
                if isinstance(prompt, dict):  # a survey still open: its buttons again
                    item["prompt"] = _prompt_frame(
                        Prompt(
                            id=str(prompt.get("id")),
                            choices=[
                                Choice(str(c.get("value")), str(c.get("label")))
                                for c in prompt.get("choices") or []
                            ],
                            comment=bool(prompt.get("comment")),
                            texts=dict(prompt.get("texts") or {}),
                        )
                    )
                out.append(item)
        return out

    async def _availability(self) -> int:
        """Agents online for this channel: fetched once, then kept fresh by the poller."""
        async with self._availability_lock:
            if self._agents_online is None:
                online = await self._fetch_availability()
                # Shown in the welcome being built; later changes are pushed by the poller.
                self._channel_status = self._fetched_status
                self._agents_online = online
            return self._agents_online

    async def _fetch_availability(self) -> int:
        try:
            info = await self.ctx.availability()
            status = info.get("status")
            self._fetched_status = status if isinstance(status, WaitStatus) else None
            return int(info.get("agents_online", 0))
        except Exception as exc:
            self.ctx.log.debug("availability unknown: %s", exc)
            return 0

    async def _poll_availability(self) -> None:
        while not self._stopping:  # not only the cancellation: Python 3.11 can lose it
            await asyncio.sleep(AVAILABILITY_INTERVAL)
            online = await self._fetch_availability()
            await self._set_channel_status(self._fetched_status)
            if online != self._agents_online:
                self._agents_online = online
                frame = json.dumps({"type": "availability", "agents_online": online})
                for group in list(self._sockets.values()):
                    for sock in list(group):
                        await self._send_raw(sock.ws, frame)

    # --- where the visitor stands (closed, queue position) ------------------------------
    def _status_frame(self, visitor: str, language: str) -> dict[str, Any]:
        status = self._wait.get(visitor) or self._channel_status or WaitStatus("served")
        return status.to_frame() | {"type": "status", "text": status_text(status, language)}

    async def _push_status(self, visitor: str) -> None:
        for sock in list(self._sockets.get(visitor, ())):
            await self._send(sock.ws, self._status_frame(visitor, sock.language))

    async def _set_channel_status(self, status: WaitStatus | None) -> None:
        if status == self._channel_status:
            return
        self._channel_status = status
        for visitor in [v for v in self._sockets if v not in self._wait]:
            await self._push_status(visitor)

    async def wait_status(self, to: Identity, conversation_id: str, status: WaitStatus) -> None:
        if status.state == "served":
            if self._wait.pop(to.address, None) is None:
                return
        elif self._wait.get(to.address) == status:
            return
        else:
            self._wait[to.address] = status
        with contextlib.suppress(Exception):
            await self._push_status(to.address)

    # --- outbound ------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Push the reply to every open tab of the visitor here; `reached` says how many.
        With none open here it is still sent as far as this process goes: the core may
        hand it to another instance holding the visitor's socket (gateway/coord/), or, with
        none anywhere, holds it, and the next connect restores it from history."""
        reached = 0
        try:
            frame: dict[str, Any] = {
                "type": "message",
                "id": message.id,
                "direction": "out",
                "text": message.text,
                "sender_name": message.sender_name,
                "created_at": _now_iso(),
            }
            if message.prompt is not None:  # a survey: buttons under the message
                frame["prompt"] = _prompt_frame(message.prompt)
            reached = await self._push(message.to.address, frame)
        except Exception:
            self.ctx.log.exception("webchat push failed")
        return DeliveryResult.sent(message.id, reached=reached)

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


_PROFILE_KEYS = ("name", "email", "verified", "code_for", "asked_for")
_SUGGEST_CHARS = 500
_SUGGEST_TIMEOUT = 2.0
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")


def _article_refs(value: Any) -> list[dict[str, str]] | None:
    """Up to five `{slug, language}` the widget names; None when there are none or they
    are malformed."""
    if not isinstance(value, list) or not value or len(value) > 5:
        return None
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            return None
        slug, lang = item.get("slug"), item.get("language")
        if not isinstance(slug, str) or not _SLUG.match(slug) or lang not in ("de", "en"):
            return None
        out.append({"slug": slug, "language": lang})
    return out


_DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
}


def status_text(status: WaitStatus, language: str) -> str | None:
    """The widget's notice for `status` in the visitor's language (de/en); None: none."""
    de = language == "de"
    if status.state == "closed":
        clock, days = status.opens_time, status.opens_in_days
        if clock is None or days is None:
            return "Wir haben gerade geschlossen." if de else "We're closed right now."
        day = _DAYS["de" if de else "en"][status.opens_weekday or 0]
        if de:
            when = (
                f"ab {clock} Uhr"
                if days == 0
                else f"morgen ab {clock} Uhr"
                if days == 1
                else f"am {day} ab {clock} Uhr"
            )
            return f"Wir haben geschlossen und sind {when} wieder da."
        when = (
            f"at {clock}"
            if days == 0
            else f"tomorrow at {clock}"
            if days == 1
            else f"on {day} at {clock}"
        )
        return f"We're closed, back {when}."
    if status.state == "waiting" and status.position is not None:
        if de:
            text = f"Sie sind Nummer {status.position} in der Warteschlange."
        else:
            text = f"You are number {status.position} in the queue."
        if status.estimated_wait is not None:
            minutes = max(1, round(status.estimated_wait / 60))
            text += (
                f" Geschätzte Wartezeit: etwa {minutes} Min."
                if de
                else f" Estimated wait: about {minutes} min."
            )
        return text
    return None


def _prompt_frame(prompt: Prompt) -> dict[str, Any]:
    """A survey's question as the widget draws it: buttons, then maybe a comment box."""
    return {
        "id": prompt.id,
        "choices": [{"value": c.value, "label": c.label} for c in prompt.choices],
        "comment": prompt.comment,
        "texts": prompt.texts,
    }


def _language(tag: Any) -> str:
    """The browser's language as the gateway writes to the visitor: German or English."""
    return "de" if isinstance(tag, str) and tag.strip().lower()[:2] == "de" else "en"


def _public_profile(profile: dict[str, str]) -> dict[str, str]:
    """What the visitor typed, as the widget shows it back."""
    return {k: v for k, v in profile.items() if k in ("name", "email")}


def _verification_state(profile: dict[str, str]) -> dict[str, Any] | None:
    email = profile.get("email")
    if not email:
        return None
    if email == profile.get("verified"):
        return {"status": "verified", "email": email}
    if email == profile.get("code_for"):
        return {"status": "pending", "email": email}
    return {"status": "unverified", "email": email}


def _verification_frame(email: str, result: VerificationResult) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "verification", "status": result.status, "email": email}
    if result.attempts_left is not None:
        frame["attempts_left"] = result.attempts_left
    if result.retry_after is not None:
        frame["retry_after"] = max(1, int(result.retry_after + 0.999))
    return frame


def _forbidden_origin() -> web.Response:
    return web.json_response(
        {"error": {"code": "forbidden", "message": "origin not allowed"}}, status=403
    )


def _refuse(status: int, code: str, message: str) -> NoReturn:
    error = ApiError(status, code, message)
    error.headers["Retry-After"] = "10"
    raise error


def _json(msg: Any) -> dict[str, Any] | None:
    """The frame's JSON object, or None when it is not one. Raises `JsonTooComplex` for a
    frame nested too deeply or holding a number too long: a hostile client."""
    if getattr(msg, "type", None) != WSMsgType.TEXT or not isinstance(msg.data, str):
        return None
    try:
        data = loads_json(msg.data)
    except JsonTooComplex:
        raise
    except MalformedJson:
        return None
    return data if isinstance(data, dict) else None


async def _close_hostile(ws: web.WebSocketResponse, exc: JsonTooComplex) -> None:
    """Close at once with 1007 (invalid frame payload data) and why, in at most the 123
    bytes a close reason may have."""
    reason = str(exc).encode()[:123]
    with contextlib.suppress(Exception):
        await ws.close(code=1007, message=reason)
