"""The worker pool that keeps costly work off the event loop (connectors/procpool.py):
a task over its CPU, memory or wall-clock limit fails alone, its worker is replaced, and
no process outlives `close()`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from connectors.procpool import LimitExceeded, TaskFailed, WorkerPool


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def children_running(marker: str) -> list[int]:
    """Processes whose parent is this one and whose command line holds `marker`."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read().rsplit(") ", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and marker.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    p = WorkerPool("tests.pool_targets:pid", workers=2, cpu_seconds=1, memory_mb=200)
    yield p
    await p.close()


async def test_a_task_over_its_cpu_time_fails_alone_and_its_worker_is_replaced() -> None:
    spin = WorkerPool("tests.pool_targets:spin", workers=2, cpu_seconds=1, memory_mb=200)
    try:
        results = await asyncio.gather(
            spin.run(0.05), spin.run(30.0), spin.run(0.05), spin.run(0.05),
            return_exceptions=True,
        )  # fmt: skip
        assert results[0] == results[2] == results[3] == "done"
        assert isinstance(results[1], LimitExceeded)
        assert "more than 1 s of CPU time" in str(results[1])
        # the pool still has its two workers' worth of capacity
        assert await asyncio.gather(*(spin.run(0.01) for _ in range(4))) == ["done"] * 4
    finally:
        await spin.close()


async def test_a_task_over_its_memory_fails_and_the_next_one_runs() -> None:
    hog = WorkerPool("tests.pool_targets:hog", workers=1, cpu_seconds=5, memory_mb=200)
    try:
        with pytest.raises(LimitExceeded, match="more than 200 MB"):
            await hog.run(400)
        assert await hog.run(10) == 10 * 1024 * 1024
    finally:
        await hog.close()


async def test_a_worker_that_does_not_answer_in_time_is_killed() -> None:
    slow = WorkerPool(
        "tests.pool_targets:sleep", workers=1, cpu_seconds=1, memory_mb=200, wall_seconds=0.5
    )
    try:
        await slow.run(0.01)
        (first,) = slow.pids
        with pytest.raises(LimitExceeded, match=r"longer than 0\.5 s"):
            await slow.run(60)
        assert not alive(first)
        assert await slow.run(0.01) == "slept"
    finally:
        await slow.close()


async def test_an_exception_comes_back_and_the_worker_stays() -> None:
    fail = WorkerPool("tests.pool_targets:fail", workers=1, cpu_seconds=1, memory_mb=200)
    try:
        with pytest.raises(TaskFailed) as caught:
            await fail.run("bad input")
        assert caught.value.kind == "ValueError" and caught.value.message == "bad input"
        (worker,) = fail.pids
        with pytest.raises(TaskFailed):
            await fail.run("again")
        assert fail.pids == [worker]
    finally:
        await fail.close()


async def test_close_leaves_no_process_behind(pool: WorkerPool) -> None:
    pids = set(await asyncio.gather(*(pool.run(0.1) for _ in range(4))))
    assert pids <= set(pool.pids) and all(alive(p) for p in pids)
    assert all(p != os.getpid() for p in pids)  # a separate process, not the event loop's
    busy = asyncio.create_task(pool.run(30))
    await asyncio.sleep(0.2)
    await pool.close()
    with pytest.raises(Exception):  # noqa: B017 - a task under way fails with its worker
        await busy
    assert not any(alive(p) for p in pids)
    assert pool.pids == []


async def test_tasks_queued_behind_a_killed_one_are_run_by_its_replacement() -> None:
    # one worker, four tasks sent to it at once: the first goes over its CPU time
    spin = WorkerPool("tests.pool_targets:spin", workers=1, cpu_seconds=1, memory_mb=200)
    try:
        results = await asyncio.gather(
            spin.run(30.0), spin.run(0.01), spin.run(0.01), spin.run(0.01),
            return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[0], LimitExceeded)
        assert results[1:] == ["done"] * 3
        assert len(spin.pids) == 1
    finally:
        await spin.close()


async def test_close_right_after_a_worker_died_leaves_nothing_behind() -> None:
    spin = WorkerPool("tests.pool_targets:spin", workers=2, cpu_seconds=1, memory_mb=200)
    results = await asyncio.gather(spin.run(30.0), spin.run(0.01), return_exceptions=True)
    assert isinstance(results[0], LimitExceeded) and results[1] == "done"
    await spin.close()  # the dead worker's reaping may still be under way
    assert children_running("connectors.procpool") == []
