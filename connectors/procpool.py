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
  plus the task's allowance (rounded up to a whole second); when a task goes over, the
  kernel's SIGXCPU makes the worker report it and exit;
- wall clock, as a backstop (a task stuck inside C code, which a signal handler cannot
  interrupt; a machine too loaded to run it): a worker that has not answered a task
  `wall_seconds` after starting it is killed.

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
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LEN = struct.Struct(">I")
# Where the `connectors` package lives: put on the worker's path.
_ROOT = str(Path(__file__).resolve().parents[1])
# The longest frame either side accepts (a mail and its parsed form fit well below).
MAX_FRAME = 1 << 30
# Exit status of a worker that ran out of memory or CPU time (it reports it first).
_EXIT_MEMORY = 3
_EXIT_CPU = 4


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


class _Job:
    __slots__ = ("future", "request", "tries")

    def __init__(self, request: bytes, future: asyncio.Future[Any]) -> None:
        self.request = request
        self.future = future
        self.tries = 0

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        # sent, answered in this order
        self.jobs: deque[_Job] = deque()
        self.wake = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, job: _Job) -> None:
        self.jobs.append(job)
        self.stdin.write(_LEN.pack(len(job.request)) + job.request)
        self.wake.set()

    async def receive(self) -> Any:
        (size,) = _LEN.unpack(await self.stdout.readexactly(_LEN.size))
        if size > MAX_FRAME:
            raise ConnectionError(f"worker {self.pid} sent a frame of {size} bytes")
        return pickle.loads(await self.stdout.readexactly(size))

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def reap(self) -> int | None:
        """Wait for the process to end (it was killed or is dying) and close its pipes;
        its return code."""
        try:
            try:
                async with asyncio.timeout(5):
                    return await self.proc.wait()
            except TimeoutError:
                self.kill()
                return await self.proc.wait()
        finally:
            # the pipes' transport (asyncio.subprocess.Process has no public close), also
            # when cancelled: else the garbage collector closes it, maybe after the loop
            transport = getattr(self.proc, "_transport", None)
            if transport is not None:
                transport.close()


class _Dead(Exception):
    """The worker is gone (or must go); `error` is what its current task gets."""

    def __init__(self, error: PoolError | None, head_pending: bool = True) -> None:
        self.error = error
        self.head_pending = head_pending


class WorkerPool:
    """Up to `workers` processes running `target` ("module:function").

    Tasks are pipelined: a worker holds up to `depth` tasks (the next request is already in
    its pipe when it answers one), answered in order. When a worker dies, the task it was
    running gets the reason and the tasks queued behind it go to another worker."""

    def __init__(
        self,
        target: str,
        *,
        workers: int,
        cpu_seconds: float,
        memory_mb: int,
        wall_seconds: float | None = None,
        depth: int = 16,
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
        self.depth = max(1, depth)
        self.name = name
        self.log = log or logging.getLogger("switchboard.procpool")
        self._workers: list[_Worker] = []
        self._queue: deque[_Job] = deque()
        self._spawning = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        # every worker's reader, until its worker is reaped (also one that is dying)
        self._readers: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers alive now (for tests and diagnostics)."""
        return sorted(w.pid for w in self._workers)

    async def run(self, *args: Any) -> Any:
        """`target(*args)` in a worker; its result. Raises a `PoolError` (see the module)."""
        request = pickle.dumps((self.cpu_seconds, args), protocol=pickle.HIGHEST_PROTOCOL)
        job = _Job(request, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._pump()
        # cancelled: a queued job is skipped, a sent one's answer is dropped
        return await job.future

    def _pump(self) -> None:
        """Hand queued tasks to workers with room; start workers while there are fewer
        than `size` and tasks wait."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        if (
            self._queue
            and len(self._workers) + self._spawning < self.size
            and all(w.jobs for w in self._workers)
        ):
            self._spawning += 1
            self._background(self._start_worker())
        while self._queue:
            job = self._queue[0]
            if job.future.done():
                self._queue.popleft()
                continue
            # while workers are starting, each running one takes a single task, so the
            # first batch spreads over all of them
            room = 1 if self._spawning else self.depth
            free = [w for w in self._workers if len(w.jobs) < room]
            if not free:
                return
            worker = min(free, key=lambda w: len(w.jobs))
            self._queue.popleft()
            try:
                worker.send(job)
            except (ConnectionError, RuntimeError, OSError):
                worker.jobs.pop()
                self._queue.appendleft(job)
                worker.kill()  # its reader finds it dead and requeues the rest
                return

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_worker(self) -> None:
        try:
            worker = await self._spawn()
        except PoolUnavailable as exc:
            self._spawning -= 1
            if not self._workers and not self._spawning:
                while self._queue:
                    self._queue.popleft().fail(exc)
            return
        self._spawning -= 1
        self._workers.append(worker)
        worker.reader = asyncio.get_running_loop().create_task(self._read(worker))
        self._readers.add(worker.reader)
        worker.reader.add_done_callback(self._readers.discard)
        self._pump()

    async def _read(self, worker: _Worker) -> None:
        """Answer the worker's tasks in order; when it dies, settle the one it ran and
        requeue the others."""
        try:
            while True:
                if not worker.jobs:
                    worker.wake.clear()
                    await worker.wake.wait()
                    continue
                try:
                    async with asyncio.timeout(self.wall_seconds):
                        reply = await worker.receive()
                except TimeoutError:
                    raise _Dead(
                        LimitExceeded(
                            f"took longer than {self.wall_seconds:g} s (wall clock); "
                            "the worker was stopped"
                        )
                    ) from None
                except (asyncio.IncompleteReadError, ConnectionError, pickle.PickleError):
                    raise _Dead(None) from None
                job = worker.jobs.popleft()
                status = reply[0]
                if status == "memory":
                    job.fail(LimitExceeded(f"needed more than {self.memory_mb} MB of memory"))
                    raise _Dead(None, head_pending=False)
                if status == "cpu":
                    job.fail(self._death(-signal.SIGXCPU))
                    raise _Dead(None, head_pending=False)
                if not job.future.done():
                    if status == "ok":
                        job.future.set_result(reply[1])
                    else:
                        job.future.set_exception(TaskFailed(str(reply[1]), str(reply[2])))
                self._pump()
        except _Dead as dead:
            with contextlib.suppress(ValueError):
                self._workers.remove(worker)  # no further task goes to it
            worker.kill()
            code = await worker.reap()
            reason = dead.error or self._death(code)
            if dead.head_pending and worker.jobs:
                worker.jobs.popleft().fail(reason)
            self.log.info(
                "%s: worker %d ended (%s); %d queued task(s) go to another",
                self.name,
                worker.pid,
                reason,
                len(worker.jobs),
            )
            self._drop(worker)
        except asyncio.CancelledError:
            worker.kill()
            raise

    def _drop(self, worker: _Worker) -> None:
        """Forget a dead worker; its unanswered tasks go back to the queue, in order."""
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        for job in reversed(worker.jobs):
            job.tries += 1
            if job.tries > 3:
                job.fail(PoolUnavailable("the worker processes keep dying"))
            else:
                self._queue.appendleft(job)
        worker.jobs.clear()
        self._pump()

    def _death(self, code: int | None) -> PoolError:
        if code in (-signal.SIGXCPU, _EXIT_CPU):
            return LimitExceeded(f"used more than {self.cpu_seconds:g} s of CPU time")
        if code == _EXIT_MEMORY:
            return LimitExceeded(f"needed more than {self.memory_mb} MB of memory")
        if code is not None and code < 0:
            # SIGKILL from outside is usually the kernel's out-of-memory killer; SIGSEGV or
            # SIGABRT a library that could not allocate under the memory limit
            return LimitExceeded(f"the worker process died ({_signal_name(-code)})")
        return PoolUnavailable(f"the worker process ended (exit {code})")

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        for name in ("PYTHONSTARTUP", "PYTHONTRACEMALLOC", "PYTHONASYNCIODEBUG"):
            env.pop(name, None)
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
        return _Worker(proc)

    async def close(self) -> None:
        """Stop every worker now (tasks under way or queued fail). Workers are started
        again on the next `run`, so call this last."""
        closed = PoolUnavailable("the worker pool was closed")
        # workers still starting first (a cancelled start kills its process)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        workers, self._workers = self._workers, []
        for w in workers:
            if w.reader is not None:
                w.reader.cancel()
            w.kill()
        for w in workers:
            if w.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w.reader
            await w.reap()
            for job in w.jobs:
                job.fail(closed)
            w.jobs.clear()
        # workers that died just before: their readers are reaping them
        for reader in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        while self._queue:
            self._queue.popleft().fail(closed)


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
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    module, _, attr = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    # frames go over the original stdout; anything printed goes to stderr instead
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def over_cpu(signum: int, frame: Any) -> None:
        # the parent learns why through the pipe, whoever reaps this process; a task stuck
        # in C code never gets here and is killed by the parent's wall-clock deadline
        with contextlib.suppress(BaseException):
            _write_frame(out, ("cpu",))
        os._exit(_EXIT_CPU)

    signal.signal(signal.SIGXCPU, over_cpu)
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
