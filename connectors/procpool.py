"""A small pool of worker processes with a CPU-time and a memory limit per task.

For work a connector must not do on the event loop because one hostile input can take
seconds of CPU or hundreds of MB (parsing a mail). Each worker is a fresh interpreter
(`python -m connectors.procpool`, spawned, never forked from the daemon: it inherits no
event loop, socket or database connection) speaking length-prefixed pickles over its
stdin and stdout, so the event loop awaits answers without blocking and without threads.

Limits, enforced by the kernel inside the worker:
- memory: RLIMIT_AS (address space) set once when the worker starts; a task that runs out
  gets MemoryError, and the worker reports it and exits (a fresh one replaces it);
- CPU: before each task the soft RLIMIT_CPU is set to the CPU time the worker used so far
  plus the task's allowance; a task that goes over is killed by SIGXCPU, wherever it is
  (also inside C code);
- wall clock, as a backstop: a worker that has not answered after `wall_seconds` is killed.

A task that hits a limit raises `LimitExceeded`; the function's own exception comes back
as `TaskFailed`; a worker that could not be started raises `PoolUnavailable` (nothing to
do with the input: try again later). A dead worker is replaced by the next task; other
tasks are not affected. `close()` kills every worker: no process outlives it.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies, the whole
executor breaks and every pending task fails with it, and killing a worker that is over
its time is not something it offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LEN = struct.Struct(">I")
# Where the `connectors` package lives: put on the worker's path.
_ROOT = str(Path(__file__).resolve().parents[1])
# The longest frame either side accepts (a mail and its parsed form fit well below).
MAX_FRAME = 1 << 30
# Exit status of a worker that ran out of memory (it reports it first when it can).
_EXIT_MEMORY = 3


class PoolError(Exception):
    """Base of what `WorkerPool.run` raises."""


class LimitExceeded(PoolError):
    """The task went over its CPU time, memory or wall-clock limit (the worker is gone)."""


class TaskFailed(PoolError):
    """The task's function raised; `kind` is the exception's type name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class PoolUnavailable(PoolError):
    """No worker could be started or it died for no reason of the task's: try again later."""


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def call(self, request: bytes) -> Any:
        self.stdin.write(_LEN.pack(len(request)) + request)
        await self.stdin.drain()
        head = await self.stdout.readexactly(_LEN.size)
        (size,) = _LEN.unpack(head)
        if size > MAX_FRAME:
            raise PoolUnavailable(f"worker {self.pid} sent a frame of {size} bytes")
        return pickle.loads(await self.stdout.readexactly(size))

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def reap(self) -> int | None:
        """Wait for the process to end (it was killed or is dying); its return code."""
        try:
            return await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.kill()
            return await self.proc.wait()


class WorkerPool:
    """Up to `workers` processes running `target` ("module:function") one task each."""

    def __init__(
        self,
        target: str,
        *,
        workers: int,
        cpu_seconds: float,
        memory_mb: int,
        wall_seconds: float | None = None,
        name: str = "pool",
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.target = target
        self.size = workers
        self.cpu_seconds = cpu_seconds
        self.memory_mb = memory_mb
        self.wall_seconds = wall_seconds if wall_seconds is not None else 3 * cpu_seconds + 5
        self.name = name
        self.log = log or logging.getLogger("switchboard.procpool")
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots = asyncio.Semaphore(workers)
        self._starting = 0

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers alive now (for tests and diagnostics)."""
        return sorted(w.pid for w in self._all)

    async def run(self, *args: Any) -> Any:
        """`target(*args)` in a worker; its result. Raises a `PoolError` (see the module)."""
        request = pickle.dumps((self.cpu_seconds, args), protocol=pickle.HIGHEST_PROTOCOL)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            try:
                async with asyncio.timeout(self.wall_seconds):
                    reply = await worker.call(request)
            except TimeoutError:
                worker.kill()
                await self._forget(worker)
                raise LimitExceeded(
                    f"took longer than {self.wall_seconds:g} s (wall clock); the worker was stopped"
                ) from None
            except asyncio.CancelledError:
                # its answer would come to nobody: the worker goes with the task
                worker.kill()
                await asyncio.shield(self._forget(worker))
                raise
            except (asyncio.IncompleteReadError, ConnectionError, PoolUnavailable) as exc:
                code = await self._forget(worker)
                raise self._death(code, exc) from None
            except BaseException:
                worker.kill()
                await self._forget(worker)
                raise
            status = reply[0]
            if status == "ok":
                self._idle.append(worker)
                return reply[1]
            if status == "memory":
                await self._forget(worker)
                raise LimitExceeded(f"needed more than {self.memory_mb} MB of memory")
            self._idle.append(worker)
            raise TaskFailed(str(reply[1]), str(reply[2]))

    def _death(self, code: int | None, exc: BaseException) -> PoolError:
        if code == -signal.SIGXCPU:
            return LimitExceeded(f"used more than {self.cpu_seconds:g} s of CPU time")
        if code == _EXIT_MEMORY:
            return LimitExceeded(f"needed more than {self.memory_mb} MB of memory")
        if code is not None and code < 0:
            # SIGKILL from outside is usually the kernel's out-of-memory killer; SIGSEGV or
            # SIGABRT a library that could not allocate under the memory limit
            return LimitExceeded(f"the worker process died ({_signal_name(-code)})")
        return PoolUnavailable(f"the worker process ended (exit {code}): {exc!r}")

    async def _forget(self, worker: _Worker) -> int | None:
        self._all.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        return await worker.reap()

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        root = _ROOT
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.pop("PYTHONSTARTUP", None)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "connectors.procpool",
                self.target,
                str(self.memory_mb),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
                limit=1 << 20,
            )
        except OSError as exc:
            raise PoolUnavailable(f"cannot start a worker process: {exc!r}") from exc
        worker = _Worker(proc)
        self._all.add(worker)
        return worker

    async def close(self) -> None:
        """Stop every worker now (tasks under way fail). Workers are started again on the
        next `run`, so call this last."""
        workers, self._idle = list(self._all), []
        self._all.clear()
        for w in workers:
            with contextlib.suppress(Exception):
                w.stdin.close()
            w.kill()
        for w in workers:
            await w.reap()


# --------------------------------------------------------------------------------------
# The worker side


def _read_frame(stream: Any) -> bytes | None:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    data: bytes = stream.read(size)
    return data if len(data) == size else None


def _write_frame(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _allow_cpu(seconds: float) -> None:
    """Let the next task use `seconds` more CPU time before the kernel sends SIGXCPU."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(_cpu_used() + seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def worker_main(target: str, memory_mb: int) -> None:
    """Serve tasks from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    module, _, attr = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    # frames go over the original stdout; anything printed goes to stderr instead
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    while True:
        frame = _read_frame(inp)
        if frame is None:
            return
        try:
            cpu_seconds, args = pickle.loads(frame)
            del frame
            _allow_cpu(cpu_seconds)
            result: Any = ("ok", fn(*args))
        except MemoryError:
            result = None
            with contextlib.suppress(BaseException):
                _write_frame(out, ("memory",))
            os._exit(_EXIT_MEMORY)
        except Exception as exc:
            result = ("error", type(exc).__name__, str(exc)[:500])
        try:
            _write_frame(out, result)
        except MemoryError:
            os._exit(_EXIT_MEMORY)
        except Exception as exc:  # a result that cannot be sent is the task's failure
            _write_frame(out, ("error", type(exc).__name__, str(exc)[:500]))
        del result


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]))
