"""Where the gateway may send requests to configured endpoints (SSRF guard).

An endpoint the operator configures (an event webhook, an `api` channel's `outbound_url`)
must be an http(s) URL, and must not reach loopback, private, link-local or otherwise
non-public addresses unless `allow_private_networks: true` is set for it. The check runs
after DNS resolution, at request time, and the request then goes to the very address that
was checked (the hostname stays the TLS server name and the Host header), so a name that
resolves to a public address when checked and to 127.0.0.1 a moment later (DNS
rebinding) gets nowhere. Requests do not follow redirects: a redirect could point
anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIVATE_HINT = "set allow_private_networks: true for this endpoint to allow it"


# A first path segment longer than this may be the credential itself (a token, a UUID): a
# log shows "…" in its place.
MAX_SHOWN_SEGMENT = 16
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redacted_url(url: str) -> str:
    """`url` as a log may show it: scheme, host, port and at most the path's first segment
    (when short); never the userinfo, the rest of the path, the query or the fragment, where
    endpoints such as Slack's and Zapier's webhooks carry their secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "(unparseable URL)"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if ":" in host:
        host = f"[{host}]"
    segments = parts.path.lstrip("/").split("/")
    path = ""
    if segments[0]:
        first = segments[0] if len(segments[0]) <= MAX_SHOWN_SEGMENT else "…"
        path = f"/{first}" + ("/…" if len(segments) > 1 or parts.query else "")
    elif parts.query:
        path = "/…"
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return f"{scheme}{host}{port}{path}"


def redact_urls(text: str) -> str:
    """`text` (an error message) with every URL in it shown as `redacted_url` shows it."""
    return _URL_IN_TEXT.sub(lambda m: redacted_url(m.group(0)), text)


class RefusedTarget(OSError):
    """The endpoint's address is not public and private networks are not allowed."""


def endpoint_url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint (not http(s), no host), or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return f"must be an http:// or https:// URL (got {shown})"
    if not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def non_public_reason(ip: Address) -> str | None:
    """Why `ip` is not a public unicast address (loopback, private ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return non_public_reason(ip.ipv4_mapped)
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return what
    if not ip.is_global:
        return "not globally routable"
    return None


def static_private_problem(url: str) -> str | None:
    """For config validation: the problem with an endpoint whose host is, as written, a
    non-public address (`127.0.0.1`, `[::1]`, `169.254.169.254`), or None. Names are
    resolved at request time (and by `switchboard check`, see `resolved_private_problem`)."""
    host = urlsplit(url).hostname or ""
    ip = literal_address(host)
    reason = non_public_reason(ip) if ip is not None else None
    if reason:
        return f"{host} is a {reason} address; {PRIVATE_HINT}"
    return None


def configured_endpoint(url: str, allow_private_networks: bool) -> str:
    """For config validation: `url`, or ValueError saying why it cannot be an endpoint (a
    non-public address as written counts only when private networks are not allowed)."""
    problem = endpoint_url_problem(url)
    if problem is None and not allow_private_networks:
        problem = static_private_problem(url)
    if problem:
        raise ValueError(problem)
    return url


async def resolved_private_problem(url: str) -> str | None:
    """The problem with an endpoint whose host name resolves, now, only to non-public
    addresses (`localhost`, a name in /etc/hosts or on an internal DNS), or None (also
    when it does not resolve: that may be the network of the machine that checks)."""
    try:
        await target(url, allow_private=False)
    except RefusedTarget as exc:
        return str(exc)
    except OSError:
        return None
    return None


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to, in the resolver's order, without duplicates."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = literal_address(str(sockaddr[0]))
        if ip is not None and ip not in out:
            out.append(ip)
    return out


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a request: `url` (with a checked address as its host when pinned),
    the `headers` to add (Host) and the TLS `server_hostname`."""

    url: URL
    headers: dict[str, str] = field(default_factory=dict)
    server_hostname: str | None = None


async def target(url: str, *, allow_private: bool, timeout: float = 10.0) -> Target:
    """The target of a request to the configured endpoint `url`.

    With `allow_private`, the URL as it is. Otherwise its host is resolved now and the
    request is pinned to the first public address; raises `RefusedTarget` when the
    host has no public address (so nothing is sent), `OSError` when it does not resolve
    within `timeout` seconds."""
    problem = endpoint_url_problem(url)
    if problem:
        raise RefusedTarget(f"{redacted_url(url)}: {problem}")
    parsed = URL(url)
    if allow_private:
        return Target(parsed)
    host = parsed.host or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await asyncio.wait_for(resolve(host, port), timeout)
    refused: list[str] = []
    for ip in addresses:
        reason = non_public_reason(ip)
        if reason is None:
            if literal_address(host) is not None:
                return Target(parsed)
            host_header = host if parsed.is_default_port() else f"{host}:{port}"
            return Target(
                parsed.with_host(str(ip)),
                {"Host": host_header},
                host if parsed.scheme == "https" else None,
            )
        refused.append(f"{ip} ({reason})")
    raise RefusedTarget(
        f"{host} resolves only to non-public addresses: {', '.join(refused) or 'none'}; "
        f"{PRIVATE_HINT}"
    )


__all__ = [
    "PRIVATE_HINT",
    "RefusedTarget",
    "Target",
    "endpoint_url_problem",
    "non_public_reason",
    "redact_urls",
    "redacted_url",
    "resolve",
    "resolved_private_problem",
    "static_private_problem",
    "target",
]
