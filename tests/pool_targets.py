"""Functions the process-pool tests run in worker processes (importable by a worker)."""

from __future__ import annotations

import os
import time


def echo(value: object) -> object:
    return value


def pid(sleep: float = 0.0) -> int:
    """This worker's process id (after sleeping `sleep` seconds)."""
    time.sleep(sleep)
    return os.getpid()


def spin(seconds: float) -> str:
    """Burn CPU for `seconds` of CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "done"


def hog(megabytes: int) -> int:
    """Hold `megabytes` of memory."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def fail(message: str) -> None:
    raise ValueError(message)
