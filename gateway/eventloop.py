"""The event loop `switchboard run` serves on: uvloop's when it is installed (the `fast`
extra: `pip install 'switchboard[fast]'`), else asyncio's own. `SWITCHBOARD_LOOP=asyncio`
chooses asyncio's even with uvloop installed (to compare, or to rule it out)."""

from __future__ import annotations

import asyncio
import importlib
import os


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
