"""Stopping never hangs.

On Python 3.11 `asyncio.wait_for` returns normally when its task is cancelled just as the
inner wait completes: the cancellation is lost, and a `while True` loop around it goes on
for ever, so a `stop()` that cancels the loop and awaits it never returns. Each test here
cancels a long-running loop at exactly that moment (a wake-up arrives, then the stop, in
the same turn of the event loop: a reply queued or an event published as SIGTERM comes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.dispatch import Dispatcher
from tests.gateway.conftest import SECRET, Receiver, base_config

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
    cfg["webhooks"] = [{"url": receiver.url, "secret": SECRET}]
    gw, _ = await gateway_factory(cfg)
    idle = asyncio.Event()
    signal_after(gw.store, "events_since", idle)
    await at_rest(idle, lambda: gw.webhooks._wake_all(None))
    loop_task = gw.webhooks._tasks[0]
    gw.webhooks._wake_all(None)  # an event was published ...
    await stops_in_time(gw.webhooks.stop(), loop_task)  # ... as the gateway stops
    assert loop_task.done()
