"""Connection accounting in front of the HTTP server: slow and idle clients must not lock
everyone out.

aiohttp's server has no timeout for reading a request head and no connection caps, and
asyncio's accept loop logs every failed `accept()` once the process is out of file
descriptors (Python 3.11 logs up to a backlog's worth per wake-up). So the gateway
accepts connections itself and hands each one to aiohttp's request handler wrapped in a
small protocol that keeps the connection's state:

- `head`: just connected, or the first bytes of a further request arrived on a kept-alive
  connection. The head (request line and headers) must be complete within
  `header_timeout`; else the connection is closed (with a 408 if it sent anything).
- `busy`: a request is being handled; a WebSocket or an event stream stays busy. While
  its body is still due, it must keep arriving: after `body_timeout` without a byte
  the request is abandoned (its handler cancelled) and the connection closed.
- `idle`: between requests; closed after `idle_timeout`.

Caps apply at accept time, before anything is allocated for the connection:
`max_connections_per_client` per client address (an IPv6 client by its /64) and
`max_connections` in all, lowered to fit the open-file limit (RLIMIT_NOFILE) with
headroom for the store, outbound requests and mail, so `accept()` does not run out of
descriptors. At the global cap a new connection takes the place of the oldest idle one,
else of the oldest one still sending its head: a flood of stalled connections cannot keep
a real client out. Refused connections get a 503 (global) or 429 (per client) and are
closed at once.

Behind a trusted reverse proxy the peer is the proxy: its connections count only towards
the global cap; the per-client cap then applies to concurrent requests of the client named
by `X-Forwarded-For`, and handlers see that client as `request.remote`.

Conditions (a cap reached, head timeouts, a failed accept) are logged at most once per
`LOG_INTERVAL` per kind, with counts; never once per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import json
import logging
import math
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from aiohttp import StreamReader, web
from prometheus_client import Counter, Gauge

from connectors.http import ApiError, client_key
from gateway.metrics import METRICS

log = logging.getLogger("switchboard.connections")

OPEN = Gauge(
    "switchboard_connections_open",
    "Client connections open (accepted and not yet closed)",
    registry=METRICS.registry,
)
DROPPED = Counter(
    "switchboard_connections_dropped_total",
    "Client connections refused or closed by the gateway: global_cap, client_cap, "
    "replaced (at the global cap, for a newer one), header_timeout, body_timeout, "
    "out_of_descriptors "
    "(closed to make room when accept() ran out); client_cap through a trusted proxy "
    "counts requests",
    ["reason"],
    registry=METRICS.registry,
)
ACCEPT_FAILURES = Counter(
    "switchboard_accept_failures_total",
    "accept() calls that failed (out of file descriptors or memory)",
    registry=METRICS.registry,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ProtocolFactory = Callable[[], asyncio.Protocol]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOG_INTERVAL = 60.0
ACCEPT_BATCH = 64  # connections accepted per wake-up of a listening socket
ACCEPT_RETRY = 0.1  # pause after accept() failed (out of descriptors), seconds
ACCEPT_RETRY_EVICTED = 0.01  # the same, when stalled connections were closed to make room
EVICT_ON_EXHAUSTION = 16  # stalled or idle connections closed when accept() runs out
MAX_CLOSING = 64  # evicted connections whose descriptor is not released yet
DEFAULT_BACKLOG = 1024

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _answer(status: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if not status.startswith("408"):
        head += "Retry-After: 5\r\n"
    return (head + "\r\n").encode() + body


_BUSY = _answer(
    "503 Service Unavailable", "busy", "the gateway has too many open connections; retry shortly"
)
_CLIENT_BUSY = _answer(
    "429 Too Many Requests", "too_many_connections", "too many open connections from your address"
)
_HEAD_TIMEOUT = _answer(
    "408 Request Timeout", "request_timeout", "the request head did not arrive in time"
)

_MESSAGES = {
    "global_cap": "connection cap reached: new connections refused or replacing stalled ones",
    "client_cap": "per-client connection cap reached: connections from one address refused",
    "header_timeout": "connections closed: request head not complete within header_timeout",
    "body_timeout": "requests abandoned: request body stalled for body_timeout",
    "accept_failed": "accept() failed: out of file descriptors or memory; pausing accepts",
}


def fd_budget() -> tuple[int, int]:
    """(connections this process can afford, its open-file limit): the soft RLIMIT_NOFILE
    less a reserve for the store, the outbound HTTP pool, mail and the interpreter."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        soft = 1 << 20
    reserve = min(1024, max(64, soft // 4))
    return max(16, soft - reserve), soft


class _Conditions:
    """What went wrong, counted; each kind logged at most once per interval."""

    def __init__(self, clock: Callable[[], float], interval: float = LOG_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._counts: dict[str, dict[str, int]] = {}
        self._detail: dict[str, dict[str, Any]] = {}
        self._last: dict[str, float] = {}

    def note(self, kind: str, counter: str = "count", n: int = 1, **detail: Any) -> None:
        counts = self._counts.setdefault(kind, {})
        counts[counter] = counts.get(counter, 0) + n
        self._detail[kind] = detail
        if self._clock() - self._last.get(kind, -math.inf) >= self._interval:
            self._emit(kind)

    def flush(self) -> None:
        """Log what was counted since a kind's last line, once its interval has passed."""
        now = self._clock()
        for kind in [k for k in self._counts if now - self._last[k] >= self._interval]:
            self._emit(kind)

    def _emit(self, kind: str) -> None:
        counts = self._counts.pop(kind, {})
        detail = self._detail.pop(kind, {})
        self._last[kind] = self._clock()
        level = logging.INFO if kind.endswith("_timeout") else logging.WARNING
        log.log(level, _MESSAGES[kind], extra={**counts, **detail, "interval_s": self._interval})


class State(enum.Enum):
    HEAD = "head"
    BUSY = "busy"
    IDLE = "idle"
    CLOSING = "closing"


class _Guarded(asyncio.Protocol):
    """One accepted connection: aiohttp's request handler, with its state kept."""

    __slots__ = (
        "body",
        "client",
        "guard",
        "handler",
        "inner",
        "last_rx",
        "partial",
        "state",
        "transport",
        "trusted",
    )

    def __init__(
        self, guard: ConnectionGuard, inner: asyncio.Protocol, client: str, trusted: bool
    ) -> None:
        self.guard = guard
        self.inner = inner
        self.client = client
        self.trusted = trusted
        self.state = State.HEAD
        self.partial = False  # bytes of the current head arrived
        self.transport: asyncio.Transport | None = None
        self.last_rx = guard._clock()  # when bytes last arrived
        self.body: StreamReader | None = None  # a busy request's body, still due
        self.handler: asyncio.Task[Any] | None = None  # that request's handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's subclasses asyncio.Transport, uvloop's only has
        # its methods.
        self.transport = cast(asyncio.Transport, transport)
        # aiohttp first: its handler task must be scheduled before a close the guard may
        # order now (a connection evicted before its transport existed).
        self.inner.connection_made(transport)
        self.guard._made(self, transport)

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.guard._clock()
        if self.state is State.IDLE:
            self.guard._enter(self, State.HEAD)
        if self.state is State.HEAD:
            self.partial = True
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    """Accepts the server's connections and keeps them within caps and timeouts."""

    def __init__(
        self,
        *,
        header_timeout: float,
        idle_timeout: float,
        max_connections: int,
        body_timeout: float = 30.0,
        max_connections_per_client: int,
        trusted_proxies: Sequence[Network] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        budget, self.nofile = fd_budget()
        self.max_connections = min(max_connections, budget)
        self.max_per_client = max_connections_per_client
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.trusted_proxies = tuple(trusted_proxies)
        self._clock = clock
        self._conditions = _Conditions(clock)
        self._conns: set[_Guarded] = set()
        self._per_client: dict[str, int] = {}
        self._requests: dict[str, int] = {}  # through a trusted proxy: per client
        self._heads: dict[_Guarded, float] = {}  # oldest first
        self._idle: dict[_Guarded, float] = {}  # oldest first
        self._receiving: set[_Guarded] = set()  # busy, with a body still due
        self._by_transport: dict[asyncio.BaseTransport, _Guarded] = {}
        self._closing = 0
        self._listeners: list[socket.socket] = []
        self._factory: ProtocolFactory | None = None
        self._connecting: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None

    # --- addresses ---------------------------------------------------------------------
    def is_trusted(self, address: str | None) -> bool:
        if not self.trusted_proxies or not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.trusted_proxies)

    def client_of(self, peer: str | None, forwarded: Sequence[str]) -> str | None:
        """The client a request comes from: the peer, or, when the peer is a trusted
        proxy, the rightmost `X-Forwarded-For` address that is not a trusted proxy."""
        if not self.is_trusted(peer):
            return peer
        hops = [h.strip() for value in forwarded for h in value.split(",")]
        client = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # not an address: believe nothing further left
            client = hop
            if not self.is_trusted(hop):
                break
        return client

    # --- listening ---------------------------------------------------------------------
    async def listen(
        self, factory: ProtocolFactory, host: str | None, port: int, backlog: int
    ) -> None:
        """Bind and listen on every address `host` resolves to (all of them for an
        empty host), and start accepting into `factory`'s protocols."""
        loop = asyncio.get_running_loop()
        self._loop, self._factory = loop, factory
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[int, Any]] = set()
        try:
            for family, kind, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, kind, proto)
                self._listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and self.port is not None:  # one port for every family
                    addr = (addr[0], self.port, *addr[2:])
                try:
                    sock.bind(addr)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"cannot listen on {addr[0]!s}:{addr[1]!s}: {exc.strerror}"
                    ) from None
                sock.listen(backlog)
                sock.setblocking(False)
                self.port = int(sock.getsockname()[1])
        except BaseException:
            self.close()
            raise
        for sock in self._listeners:
            loop.add_reader(sock.fileno(), self._accept, sock)
        self._schedule_sweep()

    def close(self) -> None:
        """Stop accepting. Open connections stay with aiohttp's graceful shutdown."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for sock in self._listeners:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()

    # --- accepting ---------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(listener, exc)
                return
            self._admit(conn, addr)

    def _accept_failed(self, listener: socket.socket, exc: OSError) -> None:
        """Out of descriptors (or another accept error): make room by closing the oldest
        idle or stalled connection, and stop accepting for a moment instead of spinning
        on a listening socket that stays readable."""
        evicted = 0
        ACCEPT_FAILURES.inc()
        if exc.errno in _OUT_OF_RESOURCES:
            while evicted < EVICT_ON_EXHAUSTION and self._evict_one():
                evicted += 1
            DROPPED.labels("out_of_descriptors").inc(evicted)
        self._conditions.note(
            "accept_failed",
            "failures",
            error=errno.errorcode.get(exc.errno or 0, str(exc)),
            open_connections=len(self._conns),
        )
        loop = self._loop
        assert loop is not None
        fd = listener.fileno()
        loop.remove_reader(fd)

        def resume() -> None:
            self._timers.pop(f"accept-{fd}", None)
            if listener.fileno() >= 0:
                loop.add_reader(fd, self._accept, listener)

        # Evicted descriptors are released within a loop iteration or two.
        delay = ACCEPT_RETRY_EVICTED if evicted else ACCEPT_RETRY
        self._timers[f"accept-{fd}"] = loop.call_later(delay, resume)

    def _admit(self, conn: socket.socket, addr: Any) -> None:
        conn.setblocking(False)
        peer = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        trusted = self.is_trusted(peer)
        key = client_key(peer)
        if not trusted and self._per_client.get(key, 0) >= self.max_per_client:
            self._refuse(conn, _CLIENT_BUSY)
            DROPPED.labels("client_cap").inc()
            self._conditions.note("client_cap", "refused", cap=self.max_per_client, client=key)
            return
        if len(self._conns) >= self.max_connections:
            if not self._evict_one():
                self._refuse(conn, _BUSY)
                DROPPED.labels("global_cap").inc()
                self._conditions.note("global_cap", "refused", cap=self.max_connections)
                return
            DROPPED.labels("replaced").inc()
            self._conditions.note("global_cap", "replaced", cap=self.max_connections)
        assert self._factory is not None and self._loop is not None
        protocol = _Guarded(self, self._factory(), key, trusted)
        self._conns.add(protocol)
        OPEN.inc()
        if not trusted:
            self._per_client[key] = self._per_client.get(key, 0) + 1
        self._enter(protocol, State.HEAD)
        task = self._loop.create_task(self._connect(conn, protocol))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket, protocol: _Guarded) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: protocol, conn)
        except Exception:
            conn.close()
            self._forget(protocol)

    @staticmethod
    def _refuse(conn: socket.socket, answer: bytes) -> None:
        # Read what the client already sent, so the close ends with FIN rather than a
        # reset that could destroy the answer before the client reads it.
        with contextlib.suppress(OSError):
            conn.recv(65536)
        with contextlib.suppress(OSError):
            conn.send(answer)
        conn.close()

    # --- state -------------------------------------------------------------------------
    def _made(self, conn: _Guarded, transport: asyncio.BaseTransport) -> None:
        if conn.state is State.CLOSING or conn not in self._conns:
            transport.close()  # evicted before its transport existed
            return
        self._by_transport[transport] = conn

    def _enter(self, conn: _Guarded, state: State) -> None:
        if conn.state is State.CLOSING or conn not in self._conns:
            return
        self._heads.pop(conn, None)
        self._idle.pop(conn, None)
        conn.state = state
        if state is State.HEAD:
            conn.partial = False
            self._heads[conn] = self._clock()
        elif state is State.IDLE:
            self._idle[conn] = self._clock()

    def _forget(self, conn: _Guarded) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        OPEN.dec()
        if conn.state is State.CLOSING:
            self._closing -= 1
        if not conn.trusted:
            left = self._per_client.get(conn.client, 1) - 1
            if left > 0:
                self._per_client[conn.client] = left
            else:
                self._per_client.pop(conn.client, None)
        self._heads.pop(conn, None)
        self._idle.pop(conn, None)
        self._receiving.discard(conn)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def _close(self, conn: _Guarded, answer: bytes | None) -> None:
        self._heads.pop(conn, None)
        self._idle.pop(conn, None)
        conn.state = State.CLOSING
        self._closing += 1
        if conn.transport is not None:
            if answer is not None and not conn.transport.is_closing():
                conn.transport.write(answer)
            conn.transport.close()

    def _evict_one(self) -> bool:
        """Close the oldest idle connection, else the oldest one still sending its head;
        False when every connection is busy (or too many are already closing)."""
        if self._closing >= MAX_CLOSING:
            return False
        if self._idle:
            self._close(next(iter(self._idle)), None)
            return True
        if self._heads:
            conn = next(iter(self._heads))
            self._close(conn, _HEAD_TIMEOUT if conn.partial else None)
            return True
        return False

    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        shortest = min(self.header_timeout, self.body_timeout, self.idle_timeout)
        tick = min(1.0, max(0.05, shortest / 4))
        self._timers["sweep"] = self._loop.call_later(tick, self._sweep)

    def _sweep(self) -> None:
        now = self._clock()
        timed_out = 0
        while self._heads:
            conn, since = next(iter(self._heads.items()))
            if now - since < self.header_timeout:
                break
            self._close(conn, _HEAD_TIMEOUT if conn.partial else None)
            timed_out += 1
        while self._idle:
            conn, since = next(iter(self._idle.items()))
            if now - since < self.idle_timeout:
                break
            if conn.transport is not None and conn.transport.get_write_buffer_size():
                self._enter(conn, State.IDLE)  # the last response is still being sent
                continue
            self._close(conn, None)  # routine: not counted as dropped
        stalled = self._abandon_stalled_bodies(now)
        if stalled:
            DROPPED.labels("body_timeout").inc(stalled)
            self._conditions.note(
                "body_timeout", "abandoned", stalled, body_timeout=self.body_timeout
            )
        if timed_out:
            DROPPED.labels("header_timeout").inc(timed_out)
            self._conditions.note(
                "header_timeout", "closed", timed_out, header_timeout=self.header_timeout
            )
        self._conditions.flush()
        self._schedule_sweep()

    def _abandon_stalled_bodies(self, now: float) -> int:
        """Cancel the handlers of requests whose body stopped arriving and close their
        connections. A body aiohttp stopped reading (its handler is not consuming it) is
        not the client's stall."""
        abandoned = 0
        for conn in list(self._receiving):
            if conn.body is None or conn.body.is_eof() or conn.state is not State.BUSY:
                self._receiving.discard(conn)
                continue
            transport = conn.transport
            if transport is None or not transport.is_reading():
                conn.last_rx = now
                continue
            if now - conn.last_rx < self.body_timeout:
                continue
            self._receiving.discard(conn)
            if conn.handler is not None:
                conn.handler.cancel()
            self._close(conn, None)
            abandoned += 1
        return abandoned

    # --- requests ----------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while a request is handled and idle after it; through
        a trusted proxy, names the real client and applies the per-client cap."""
        transport = request.transport
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is None:
            return await handler(request)
        self._enter(conn, State.BUSY)
        if not request.content.is_eof():
            conn.body, conn.handler = request.content, asyncio.current_task()
            self._receiving.add(conn)
        try:
            if not conn.trusted:
                return await handler(request)
            client = self.client_of(request.remote, request.headers.getall("X-Forwarded-For", []))
            if client is not None and client != request.remote:
                request = request.clone(remote=client)
            key = client_key(client)
            if self._requests.get(key, 0) >= self.max_per_client:
                DROPPED.labels("client_cap").inc()
                self._conditions.note("client_cap", "refused", cap=self.max_per_client, client=key)
                error = ApiError(
                    429, "too_many_connections", "too many open requests from your address"
                )
                error.headers["Retry-After"] = "5"
                raise error
            self._requests[key] = self._requests.get(key, 0) + 1
            try:
                return await handler(request)
            finally:
                left = self._requests[key] - 1
                if left:
                    self._requests[key] = left
                else:
                    del self._requests[key]
        finally:
            conn.body = conn.handler = None
            self._receiving.discard(conn)
            if conn.state is State.BUSY:
                self._enter(conn, State.IDLE)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are accepted by a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str | None,
        port: int,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guarded_runner = runner
        self._guard = guard
        self._host_name = host
        self._port_wanted = port
        self._backlog_wanted = backlog

    @property
    def name(self) -> str:
        host = self._host_name or "0.0.0.0"
        return f"http://{host}:{self._guard.port or self._port_wanted}"

    async def start(self) -> None:
        await super().start()  # registers the site with its runner
        server = self._guarded_runner.server
        assert server is not None, "call runner.setup() first"
        await self._guard.listen(server, self._host_name, self._port_wanted, self._backlog_wanted)

    async def stop(self) -> None:
        self._guard.close()
        await super().stop()
