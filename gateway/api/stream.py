"""`/v1/events`: the event stream over SSE or a WebSocket, read from the store's log from a
cursor (gateway/eventlog.py); the bus only wakes the reader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from connectors.http import fail
from gateway.api.auth import Principal
from gateway.api.common import authenticate, gateway_of
from gateway.api.visibility import StreamFilter
from gateway.eventlog import POLL_INTERVAL, CursorExpired, LogReader, check_cursor
from gateway.model import Event, event_json

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("switchboard.api")


# How soon a stream holding events back behind a hole in the ids looks again.
GAP_POLL = 0.05


def _since(request: web.Request) -> int | None:
    # A reconnecting EventSource repeats its URL (?since=...) and adds Last-Event-ID, which
    # is where it really is.
    raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid_parameter", "since must be an event id (integer)")
    if value < 0:
        fail(400, "invalid_parameter", "since must be >= 0")
    return value


async def _replay_then_live(
    gw: Gateway, since: int | None, emit: Any, principal: Principal | None = None
) -> None:
    """Send the stored events after `since` (or from now), then each new one as it is
    committed, read from the store's log: none skipped, none twice (gateway/eventlog.py).
    The bus only wakes the reader, and brings the live-only events. Only the events the
    principal may see. Returns when the gateway stops or the cursor falls off the log."""
    if principal is not None and (principal.scope is not None or principal.role != "admin"):
        shown = StreamFilter(gw.store, principal)

        async def filtered(event: Event) -> None:
            if await shown.allows(event):
                await emit(event)

        return await _replay_then_live(gw, since, filtered)
    with gw.bus.subscribe() as sub:
        start = since if since is not None else await gw.store.last_event_id()
        reader = LogReader(gw.store, start)
        live: list[Event] | None = []
        while live is not None:
            try:
                batch = await reader.read(500)
            except CursorExpired as exc:
                log.info(
                    "event stream fell off the pruned log; closed",
                    extra={"cursor": exc.cursor, "oldest_id": exc.oldest},
                )
                return
            for event in batch:
                await emit(event)
            for event in live:
                await emit(event)
            if len(batch) == 500 and not sub.closed:
                live = []
                continue  # more to replay: no waiting (unless the gateway is stopping)
            live = await sub.wait(GAP_POLL if reader.holding else POLL_INTERVAL)


async def events(request: web.Request) -> web.StreamResponse:
    principal = authenticate(request, allow_query=True)
    gw = gateway_of(request)
    since = _since(request)
    if since is not None:
        try:
            await check_cursor(gw.store, since)
        except CursorExpired as exc:
            fail(
                410,
                "cursor_expired",
                f"{exc}: resume with since={exc.oldest - 1} (or without since, from now)",
                {"oldest_id": exc.oldest},
            )
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _sse(request, gw, since, principal)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        fail(400, "websocket_required", "open a WebSocket, or ask for Accept: text/event-stream")
    await ws.prepare(request)

    async def emit(event: Event) -> None:
        await ws.send_str(event_json(event))

    pump = asyncio.create_task(_replay_then_live(gw, since, emit, principal))
    gw.track(ws)
    try:
        reader = asyncio.create_task(_drain(ws))
        done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done and not ws.closed:
            await ws.close(code=4000, message=b"event stream lagged or closed; resume with ?since=")
    finally:
        for task in (pump, reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gw.untrack(ws)
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return


async def _sse(
    request: web.Request, gw: Gateway, since: int | None, principal: Principal
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)

    async def emit(event: Event) -> None:
        data = event_json(event)
        head = f"id: {event.id}\n" if event.durable else ""
        await resp.write(f"{head}event: {event.type}\ndata: {data}\n\n".encode())

    pump = asyncio.create_task(_replay_then_live(gw, since, emit, principal))
    try:
        while not pump.done():
            await asyncio.wait({pump}, timeout=15)
            if not pump.done():
                await resp.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return resp
