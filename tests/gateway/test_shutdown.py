"""Stopping never hangs.

On Python 3.11 `asyncio.wait_for` returns normally when its task is cancelled just as the
inner wait completes: the cancellation is lost, and a `while True` loop around it goes on
for ever, so a `stop()` that cancels the loop and awaits it never returns. Each test here
cancels a long-running loop at exactly that moment (a wake-up arrives, then the stop, in
the same turn of the event loop: a reply queued or an event published as SIGTERM comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.dispatch import Dispatcher
from tests.gateway.conftest import SECRET, Receiver, base_config, config_text, wait_for
from tests.gateway.test_e2e_daemon import free_port

STOP_WITHIN = 2.0


async def stops_in_time(stop: Awaitable[None], loop_task: asyncio.Task[Any] | None) -> None:
    """`stop` returns within STOP_WITHIN seconds; on failure the loop is killed for good."""
    stopping = asyncio.ensure_future(stop)
    done, _ = await asyncio.wait({stopping}, timeout=STOP_WITHIN)
    if not done:
        for _ in range(100):  # cancel again until the loop really ends, then fail
            if loop_task is None or loop_task.done():
                break
            loop_task.cancel()
            await asyncio.sleep(0.01)
        await asyncio.wait({stopping}, timeout=1)
        pytest.fail(f"stop() still waiting after {STOP_WITHIN}s: the loop lost its cancellation")
    stopping.result()


def signal_after(obj: Any, method: str, idle: asyncio.Event) -> None:
    """Wrap `obj.method` so that `idle` is set each time it has returned."""
    real: Callable[..., Awaitable[Any]] = getattr(obj, method)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        idle.set()
        return result

    setattr(obj, method, wrapped)


async def at_rest(idle: asyncio.Event, poke: Callable[[], None]) -> None:
    """Wake the loop until it has done a round and gone back to waiting for a wake-up."""
    deadline = asyncio.get_running_loop().time() + 5
    idle.clear()
    while not idle.is_set():
        assert asyncio.get_running_loop().time() < deadline, "the loop never came round"
        poke()
        await asyncio.wait({asyncio.ensure_future(idle.wait())}, timeout=0.05)
    for _ in range(3):  # let it reach its wait, and the wait's inner task start
        await asyncio.sleep(0)


async def test_outbox_stops_when_a_wake_up_and_the_stop_coincide(gateway_factory: Any) -> None:
    gw, _ = await gateway_factory()
    idle = asyncio.Event()
    signal_after(gw.store, "outbox_next_due", idle)
    await at_rest(idle, gw.outbox.poke)
    loop_task = gw.outbox._task
    gw.outbox.poke()  # a reply was just queued ...
    await stops_in_time(gw.outbox.stop(), loop_task)  # ... as the gateway stops
    assert loop_task is not None and loop_task.done()


async def test_dispatcher_stops_when_a_wake_up_and_the_stop_coincide(gateway_factory: Any) -> None:
    gw, _ = await gateway_factory()
    dispatcher = Dispatcher(gw.store, gw.bus, gw.config, time.time)
    idle = asyncio.Event()
    signal_after(dispatcher, "run_pass", idle)
    await dispatcher.start()
    await at_rest(idle, dispatcher.poke)
    loop_task = dispatcher._task
    dispatcher.poke()  # a new conversation wants routing ...
    await stops_in_time(dispatcher.stop(), loop_task)  # ... as the gateway stops
    assert loop_task is not None and loop_task.done()


async def test_webhook_sender_stops_when_an_event_and_the_stop_coincide(
    gateway_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["webhooks"] = [{"url": receiver.url, "secret": SECRET, "allow_private_networks": True}]
    gw, _ = await gateway_factory(cfg)
    idle = asyncio.Event()
    signal_after(gw.store, "events_since", idle)
    await at_rest(idle, lambda: gw.webhooks._wake_all(None))
    loop_task = gw.webhooks._tasks[0]
    gw.webhooks._wake_all(None)  # an event was published ...
    await stops_in_time(gw.webhooks.stop(), loop_task)  # ... as the gateway stops
    assert loop_task.done()


async def test_gateway_stop_keeps_its_deadline_and_abandons_what_hangs(
    gateway_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["shutdown_timeout"] = 1.0
    gw, client = await gateway_factory(cfg)
    _, body = await client.inbound("before-stop", "hello")
    assert body["conversation_id"]
    released = False

    async def stubborn_stop() -> None:  # a channel whose stop ignores every cancellation
        while not released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue

    gw.connectors["api"].stop = stubborn_stop
    started = time.monotonic()
    try:
        await stops_in_time(gw.stop(), None)
        took = time.monotonic() - started
    finally:
        released = True
    assert took < 1.0 + 0.3, f"stop() took {took:.2f}s with shutdown_timeout 1s"
    [warning] = [r for r in caplog.records if r.getMessage().startswith("shutdown deadline")]
    assert getattr(warning, "abandoned", None) == ["channel api"]
    # The steps after the stuck one still ran: routing and the outbox ended, store closed.
    assert gw.dispatcher._task is None and gw.outbox._task is None
    assert not await gw.store.ping()


async def test_a_request_still_running_at_its_deadline_is_cancelled_in_time(
    gateway_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.api import health

    started_handling, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started_handling.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.json_response({})

    monkeypatch.setattr(health, "healthz", slow)
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["shutdown_timeout"] = 2.0
    gw, _ = await gateway_factory(cfg)
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(http.get(f"http://127.0.0.1:{gw.port}/healthz"))
        await asyncio.wait_for(started_handling.wait(), 5)
        began = time.monotonic()
        await stops_in_time(gw.stop(), None)
        took = time.monotonic() - began
        request.cancel()
        with contextlib.suppress(BaseException):
            await request
    assert cancelled.is_set(), "the handler was never cancelled"
    # the requests' share of the budget (70% of 2 s less the reserve), not the runner's 2 s
    assert took < 1.5, f"stop() took {took:.2f}s"
    assert "in-flight requests" not in gw.abandoned


STUCK_DAEMON = """
import asyncio, sys
from connectors.api import ApiConnector
from gateway.cli import main

async def stop(self):  # a channel whose stop never ends and ignores every cancellation
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass

ApiConnector.stop = stop
sys.exit(main(["run", "-c", sys.argv[1]]))
"""


async def test_switchboard_run_exits_0_in_time_even_when_a_channel_never_stops(
    tmp_path: Path,
) -> None:
    port = free_port()
    cfg = base_config(tmp_path / "db.sqlite")
    cfg["server"]["port"] = port
    cfg["server"]["shutdown_timeout"] = 1.0
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(cfg))
    log = tmp_path / "daemon.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-c", STUCK_DAEMON, str(config)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 1.0 + 2.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, log.read_text()
    lines = log.read_text().splitlines()
    abandoned = [line for line in lines if "shutdown deadline passed" in line]
    assert len(abandoned) == 1 and "channel api" in abandoned[0], log.read_text()


async def test_a_send_cut_short_by_the_deadline_is_sent_after_the_restart(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """The receiver holds the first delivery open past the shutdown deadline: stop still
    ends in time, and the reply is not lost: the next start delivers it (same id)."""
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers["webhook-id"])
        if len(seen) == 1:
            await release.wait()  # the first attempt hangs
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/outbound", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/outbound"
    try:
        cfg = base_config(tmp_path / "db.sqlite", url)
        cfg["server"]["shutdown_timeout"] = 1.0
        gw, client = await gateway_factory(cfg)
        _, body = await client.inbound("cut-1", "hello")
        conv_id = body["conversation_id"]
        status, msg = await client.call(
            "POST", f"/v1/conversations/{conv_id}/messages", json={"text": "hi", "agent": "alice"}
        )
        assert status == 202
        await wait_for(lambda: seen)
        started = time.monotonic()
        await stops_in_time(gw.stop(), None)
        assert time.monotonic() - started < 1.3
        _, client2 = await gateway_factory(cfg)
        await wait_for(lambda: client2.message_with_status(conv_id, msg["id"], "sent"))
        assert seen == [msg["id"], msg["id"]]
    finally:
        release.set()
        await runner.cleanup()
