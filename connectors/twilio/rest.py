"""Twilio's REST API over the gateway's shared aiohttp session (never the blocking client).

`POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, basic auth.
Errors come back as `{"code", "message", "more_info", "status"}`.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from connectors.base import AuthFailed, DeliveryResult, NotReady

from .errors import describe_error

API_VERSION = "2010-04-01"
RETRY_STATUSES = frozenset({408, 429})
DEFAULT_API_BASE_URL = "https://api.twilio.com"
# Where Twilio serves inbound media (on the default API base URL): the API itself, which
# redirects, and its media CDN, also as the bucket path on S3 it redirects to.
TWILIO_MEDIA_HOSTS = frozenset({"api.twilio.com", "media.twiliocdn.com", "mms.twiliocdn.com"})
TWILIO_MEDIA_S3 = ("s3-external-1.amazonaws.com", "/media.twiliocdn.com/")
MAX_MEDIA_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class MediaRefused(Exception):
    """A media URL (or a redirect) on a host that is not Twilio's: not fetched."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def basic_auth(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


@dataclass(slots=True)
class Media:
    content_type: str
    size: int
    data: bytes | None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class TwilioRestClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        account_sid: str,
        auth: tuple[str, str],
        api_base_url: str = "https://api.twilio.com",
        timeout: float = 15.0,
    ) -> None:
        self._session = session
        self._account_sid = account_sid
        self._auth = {"Authorization": basic_auth(*auth)}
        self._base = api_base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def account_url(self) -> str:
        return f"{self._base}/{API_VERSION}/Accounts/{self._account_sid}"

    async def check_account(self) -> dict[str, Any]:
        """Fetch our account resource: `AuthFailed` on 401/403/404, `NotReady` otherwise."""
        try:
            async with self._session.get(
                f"{self.account_url}.json", headers=self._auth, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status in (401, 403, 404):
                    raise AuthFailed(f"Twilio refused the credentials: {_error_text(body)}")
                if resp.status >= 300:
                    raise NotReady(f"Twilio answered {resp.status}: {_error_text(body)}")
                data = json.loads(body)
                return data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise NotReady(f"Twilio API unreachable: {exc!r}") from exc

    async def create_message(self, form: Sequence[tuple[str, str]]) -> DeliveryResult:
        """Create one Message; provider failures are results, never exceptions."""
        url = f"{self.account_url}/Messages.json"
        try:
            async with self._session.post(
                url, data=list(form), headers=self._auth, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return DeliveryResult.retry(f"twilio unreachable: {exc!r}")
        if 200 <= status < 300:
            try:
                data = json.loads(body)
                sid = data["sid"]
            except (ValueError, KeyError, TypeError):
                # Twilio took it but we cannot read the id: do not send it twice.
                return DeliveryResult.sent(None)
            return DeliveryResult.sent(str(sid))
        reason = _error_text(body, status)
        if status in RETRY_STATUSES or status >= 500:
            return DeliveryResult.retry(reason, retry_after=retry_after)
        return DeliveryResult.failed(reason)

    def media_allowed(self, url: str) -> bool:
        """Whether media at `url` may be fetched: only from the configured API base URL's
        origin, and on the default base URL from Twilio's documented media hosts. Any
        other URL in a webhook (loopback, a cloud metadata address ...) is not fetched."""
        if _origin(url) == _origin(self._base):
            return True
        if self._base != DEFAULT_API_BASE_URL:
            return False
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() != "https" or parts.port not in (None, 443):
            return False
        s3_host, s3_path = TWILIO_MEDIA_S3
        return host in TWILIO_MEDIA_HOSTS or (host == s3_host and parts.path.startswith(s3_path))

    async def fetch_media(self, url: str, max_bytes: int) -> Media:
        """Download inbound media; over `max_bytes` only its type and size are kept.
        Credentials go only to the Twilio API's own origin (it redirects to a CDN), and
        every hop, redirects included, must be `media_allowed` (else `MediaRefused`)."""
        for _ in range(MAX_MEDIA_REDIRECTS + 1):
            if not self.media_allowed(url):
                raise MediaRefused(f"media on a host that is not Twilio's: {url}")
            headers = self._auth if _origin(url) == _origin(self._base) else None
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    url = str(resp.url.join(URL(location)))
                    continue
                return await self._read_media(resp, max_bytes)
        raise MediaRefused(f"more than {MAX_MEDIA_REDIRECTS} redirects fetching media")

    @staticmethod
    async def _read_media(resp: aiohttp.ClientResponse, max_bytes: int) -> Media:
        resp.raise_for_status()
        content_type = resp.headers.get("Content-Type", "application/octet-stream")
        content_type = content_type.split(";")[0].strip() or "application/octet-stream"
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            return Media(content_type, declared, None)
        data = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data.extend(chunk)
            if len(data) > max_bytes:
                return Media(content_type, declared or len(data), None)
        return Media(content_type, len(data), bytes(data))


def _error_text(body: bytes, status: int | None = None) -> str:
    """`twilio error 21211: The 'To' number ... is not a valid phone number.`"""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("code") is not None:
        code = data["code"]
        message = data.get("message") or describe_error(code) or "error"
        return f"twilio error {code}: {message}"
    snippet = body[:200].decode("utf-8", "replace").strip()
    return f"twilio HTTP {status}: {snippet}" if status else snippet or "no detail"


__all__ = ["Media", "MediaRefused", "TwilioRestClient", "parse_retry_after"]
