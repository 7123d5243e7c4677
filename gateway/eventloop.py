"""The event loop `switchboard run` serves on: uvloop's when it is installed (the `fast`
extra: `pip install 'switchboard[fast]'`), else asyncio's own. `SWITCHBOARD_LOOP=asyncio`
chooses asyncio's even with uvloop installed (to compare, or to rule it out). Also how the
runtime loops are stopped."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Collection
from typing import Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("SWITCHBOARD_LOOP", "").lower() != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


async def stop_tasks(tasks: Collection[asyncio.Task[Any]], timeout: float, what: str) -> bool:
    """Cancel `tasks` and wait for them at most `timeout` seconds; True when all ended.

    The loops these run also end on a stop flag: on Python 3.11 a cancellation can be lost
    (inside `asyncio.wait_for`), so a stop must never depend on it arriving. A task still
    running at the deadline is abandoned with one warning naming `what`."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return True
    _, pending = await asyncio.wait(set(tasks), timeout=timeout)
    if pending:
        logging.getLogger("switchboard").warning("%s did not stop; abandoned", what)
    return not pending
