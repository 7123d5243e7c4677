"""A local stand-in for Twilio's REST API and webhook delivery.

Speaks what a connector uses of `https://api.twilio.com`:

- `GET  /2010-04-01/Accounts/{AccountSid}.json`
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded, basic auth) returning
  a Message resource (201) or Twilio's error JSON `{code, message, more_info, status}`
- `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{MM}/Media/{ME}` (basic auth, 307 to a
  CDN URL like Twilio's)

and, in the other direction, delivers signed webhooks (`post_webhook`, `post_status`) the
way Twilio does. Knobs: `fail_next()` (429 with Retry-After, 500, any 4xx), `stop()` /
`start()` (down / up), `requests` (everything received), `messages` (created).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import phonenumbers
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from .server import Recorded, RestartableServer, Standin

API = "/2010-04-01"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "standin-auth-token-0123456789"
CHANNEL_NUMBER = "+15005550006"  # Twilio's test "From" number
CUSTOMER_NUMBER = "+14155550123"
WHATSAPP_NUMBER = "+14155238886"  # Twilio's WhatsApp sandbox number


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(slots=True)
class _Failure:
    status: int
    code: int
    message: str
    retry_after: str | None


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _valid_e164(value: str) -> bool:
    try:
        return value.startswith("+") and phonenumbers.is_possible_number(
            phonenumbers.parse(value, None)
        )
    except phonenumbers.NumberParseException:
        return False


class TwilioStandin(Standin):
    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        port: int | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[Recorded] = []
        self.messages: list[dict[str, Any]] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.media_fetches: list[str] = []
        self._failures: collections.deque[_Failure] = collections.deque()
        self.server = RestartableServer(self._make_app, port)

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(API + "/Accounts/{account}.json", self._account)
        app.router.add_post(API + "/Accounts/{account}/Messages.json", self._create_message)
        app.router.add_get(API + "/Accounts/{account}/Messages/{msg}/Media/{media}", self._media)
        app.router.add_get("/cdn/{media}", self._cdn)
        return app

    # -- knobs ---------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` Messages.json creates answer `status` with Twilio's error JSON."""
        default = {
            429: (20429, "Too Many Requests"),
            500: (20500, "Internal Server Error"),
            503: (20503, "Service Unavailable"),
            401: (20003, "Authenticate"),
        }.get(status, (21211, "The 'To' number is not a valid phone number."))
        failure = _Failure(
            status,
            code if code is not None else default[0],
            message if message is not None else default[1],
            None if retry_after is None else str(retry_after),
        )
        self._failures.extend([failure] * times)

    def add_media(self, content: bytes, content_type: str, message_sid: str | None = None) -> str:
        """Store inbound media; returns its Twilio-style URL (needs basic auth)."""
        media_sid = sid("ME")
        self.media[media_sid] = (content, content_type)
        msg = message_sid or sid("MM")
        return f"{self.url}{API}/Accounts/{self.account_sid}/Messages/{msg}/Media/{media_sid}"

    # -- the REST API ------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    async def _record(self, request: web.Request) -> Recorded:
        body = await request.read()
        params: dict[str, Any] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            multi = MultiDict(parse_qsl(body.decode(), keep_blank_values=True))
            params = {k: (multi.getall(k) if len(multi.getall(k)) > 1 else multi[k]) for k in multi}
        rec = Recorded(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            body,
            params,
        )
        self.requests.append(rec)
        return rec

    def _error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(error_body(status, code, message), status=status, headers=headers)

    async def _account(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        if request.match_info["account"] != self.account_sid:
            return self._error(404, 20404, "The requested resource was not found")
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return web.json_response(
            {
                "sid": self.account_sid,
                "friendly_name": "Stand-in account",
                "status": "active",
                "type": "Full",
                "date_created": now,
                "date_updated": now,
                "uri": f"{API}/Accounts/{self.account_sid}.json",
            }
        )

    async def _create_message(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        if request.match_info["account"] != self.account_sid:
            return self._error(404, 20404, "The requested resource was not found")
        if self._failures:
            f = self._failures.popleft()
            headers = {"Retry-After": f.retry_after} if f.retry_after is not None else None
            return self._error(f.status, f.code, f.message, headers)
        p = rec.params
        to, from_ = str(p.get("To", "")), str(p.get("From", ""))
        service = p.get("MessagingServiceSid")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not from_ and not service:
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        if not _valid_e164(to.removeprefix("whatsapp:")):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if from_ and to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
            return self._error(
                400, 21910, "Invalid From and To pair. From and To should be of the same channel"
            )
        media = p.get("MediaUrl", [])
        media = [media] if isinstance(media, str) else media
        if not p.get("Body") and not media and not p.get("ContentSid"):
            return self._error(400, 21602, "Message body is required.")
        now = format_datetime(datetime.now(UTC), usegmt=True)
        msg_sid = sid("SM") if not media else sid("MM")
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": p.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": msg_sid,
            "status": "queued" if not service else "accepted",
            "subresource_uris": {
                "media": f"{API}/Accounts/{self.account_sid}/Messages/{msg_sid}/Media.json"
            },
            "to": to,
            "uri": f"{API}/Accounts/{self.account_sid}/Messages/{msg_sid}.json",
        }
        stored = dict(resource)
        stored["_request"] = p
        self.messages.append(stored)
        return web.json_response(resource, status=201)

    async def _media(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        media_sid = request.match_info["media"]
        if media_sid not in self.media:
            return self._error(404, 20404, "The requested resource was not found")
        raise web.HTTPTemporaryRedirect(f"/cdn/{media_sid}")

    async def _cdn(self, request: web.Request) -> web.Response:
        media_sid = request.match_info["media"]
        self.media_fetches.append(media_sid)
        if media_sid not in self.media:
            return web.Response(status=404)
        content, content_type = self.media[media_sid]
        return web.Response(body=content, content_type=content_type)

    # -- webhooks, as Twilio sends them --------------------------------------------------
    def sign(self, url: str, params: dict[str, str] | MultiDict[str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    def sign_bytes(self, url: str, params: list[tuple[str, bytes]]) -> str:
        """Twilio's HMAC-SHA1 over the URL and the sorted parameters, the values as raw
        bytes (which `sign` cannot take when they are not UTF-8)."""
        data = url.encode() + b"".join(k.encode() + v for k, v in sorted(params))
        digest = hmac.new(self.auth_token.encode(), data, hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def inbound_params(
        self,
        from_: str,
        to: str,
        body: str,
        *,
        media: list[tuple[str, str]] | None = None,
        profile_name: str | None = None,
        message_sid: str | None = None,
    ) -> dict[str, str]:
        """The form Twilio posts for an incoming SMS/MMS/WhatsApp message."""
        msid = message_sid or sid("SM" if not media else "MM")
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": msid,
            "NumMedia": str(len(media or [])),
            "ToCity": "SAN FRANCISCO",
            "FromZip": "",
            "SmsSid": msid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "US",
            "To": to,
            "ToZip": "94105",
            "NumSegments": "1",
            "MessageSid": msid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        if from_.startswith("whatsapp:"):
            params["WaId"] = from_.removeprefix("whatsapp:+")
            params["ProfileName"] = profile_name or ""
            params["MessageType"] = "text" if not media else "image"
            for key in ("ToCountry", "ToState", "ToCity", "ToZip", "FromCountry", "FromZip"):
                params.pop(key)
        for i, (url, content_type) in enumerate(media or []):
            params[f"MediaUrl{i}"] = url
            params[f"MediaContentType{i}"] = content_type
        return params

    async def post_webhook(
        self,
        session: aiohttp.ClientSession,
        url: str,
        params: dict[str, str],
        *,
        signed_url: str | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """POST `params` form-encoded to `url`, signed for `signed_url` (the public URL
        configured at Twilio; default `url`). Returns (status, content type, text)."""
        sig = signature if signature is not None else self.sign(signed_url or url, params)
        all_headers = {"X-Twilio-Signature": sig, "User-Agent": "TwilioProxy/1.1"}
        all_headers.update(headers or {})
        async with session.post(url, data=params, headers=all_headers) as resp:
            return resp.status, resp.content_type, await resp.text()

    async def post_status(
        self,
        session: aiohttp.ClientSession,
        message_sid: str,
        status: str,
        *,
        error_code: int | None = None,
        url: str | None = None,
        signed_url: str | None = None,
    ) -> tuple[int, str, str]:
        """Deliver a status callback for a message created here (to its StatusCallback)."""
        msg = next(m for m in self.messages if m["sid"] == message_sid)
        callback = url or msg["_request"].get("StatusCallback")
        if not callback:
            raise ValueError("message was created without StatusCallback")
        params = {
            "SmsSid": message_sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": msg["to"],
            "MessageSid": message_sid,
            "AccountSid": self.account_sid,
            "From": msg["from"] or "",
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return await self.post_webhook(
            session, callback, params, signed_url=signed_url or msg["_request"]["StatusCallback"]
        )
