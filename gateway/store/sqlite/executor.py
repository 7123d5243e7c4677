"""One thread that owns one sqlite3 connection and runs functions on it, in order.

A store operation is many statements; handed to this thread as one function it costs one
thread hop, not one per statement. The caller awaits a future that the thread resolves
through `loop.call_soon_threadsafe`, so the event loop never blocks on SQLite. Only the
public APIs of `sqlite3`, `threading`, `queue` and `asyncio` are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# A job: the function, the future that takes its outcome, the loop that owns the future.
_Job = tuple[
    Callable[[sqlite3.Connection], Any],
    "asyncio.Future[Any]",
    asyncio.AbstractEventLoop,
]


class ExecutorClosed(RuntimeError):
    """The executor was stopped (or never started): nothing runs any more."""


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up waiting (cancelled): nobody to tell
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _post(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # A closed loop (RuntimeError): its caller is gone, nobody to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


class SqliteExecutor:
    """`start(connect)` opens the connection on the executor's own thread; `run(fn)` runs
    `fn(connection)` there and returns its result (or raises its exception); `stop()`
    closes the connection and ends the thread. Jobs run one at a time in the order they
    were submitted, so a function sees no other job's statements in between."""

    def __init__(self, name: str = "sqlite") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._open = False

    @property
    def running(self) -> bool:
        return self._open

    async def start(self, connect: Callable[[], sqlite3.Connection]) -> None:
        if self._thread is not None:
            raise RuntimeError("the executor was already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._work, args=(connect, loop, ready), name=self.name, daemon=True
        )
        self._thread.start()
        await ready
        self._open = True

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open:
            raise ExecutorClosed("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    async def stop(self) -> None:
        thread = self._thread
        if thread is None or not self._open:
            return
        self._open = False
        self._jobs.put(None)
        # The thread ends right after closing the connection; wait for it off the loop.
        await asyncio.to_thread(thread.join)

    def _work(
        self,
        connect: Callable[[], sqlite3.Connection],
        loop: asyncio.AbstractEventLoop,
        ready: asyncio.Future[None],
    ) -> None:
        try:
            conn = connect()
        except BaseException as exc:
            _post(loop, ready, None, exc)
            return
        _post(loop, ready, None, None)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                fn, future, job_loop = job
                try:
                    result = fn(conn)
                except BaseException as exc:
                    _post(job_loop, future, None, exc)
                else:
                    _post(job_loop, future, result, None)
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("sqlite close failed", exc_info=True)
            # Jobs submitted while stopping: they will never run.
            while True:
                try:
                    left = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    _post(left[2], left[1], None, ExecutorClosed("store is not open"))
