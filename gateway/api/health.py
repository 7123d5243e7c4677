"""`/healthz`, `/readyz` and `/metrics`: is this instance alive, ready, and how it does.

`/readyz` fields: `ready` (take traffic: the store answers and every channel runs, or runs
degraded); `store` (`ok`/`down`), and while it is down `reason` (`store unreachable: ...`,
gateway/store/outage.py); `channels` (each channel's state); `coordination`, how
this instance hears of the other instances' work (gateway/coord/): `local` (no Redis
configured: one instance), `ok` (Redis reachable and listened to), `degraded` (Redis
configured but unreachable: the instance still serves from the store and polls its event
log and outbox every second instead of being woken; replies to a chat socket held by
another instance wait until Redis is back). `degraded` coordination never makes an
instance unready: the store is the truth, Redis only speeds things up."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.http import fail
from gateway.api.common import AUTH, gateway_of
from gateway.metrics import METRICS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = gateway_of(request)
    store_ok = await gw.store.ping()
    channels = await gw.channel_health() if store_ok else gw.channel_states()
    # A degraded channel still serves: it is not a reason to take this instance out.
    ready = store_ok and all(
        state == "running" or state.startswith("degraded") for state in channels.values()
    )
    body: dict[str, object] = {
        "ready": ready,
        "store": "ok" if store_ok else "down",
        "channels": channels,
        "coordination": gw.coordinator.status,
    }
    if not store_ok:
        body["reason"] = f"store unreachable: {gw.store.down_reason() or 'no answer'}"
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    if not request.app[AUTH].metrics_allowed(request):
        fail(401, "unauthenticated", "GET /metrics needs the metrics token (auth.metrics_token)")
    await gateway_of(request).kpis.refresh_gauges()
    body = generate_latest(METRICS.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
