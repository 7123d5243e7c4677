"""The clock the time tests give their daemons holds in a threaded process: no call in any
thread may see today's real date (the plain libfaketime build let ~1 in 500 through, which
breached SLAs at random in the KPI and reports tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.faketime import faketime_env, write_clock

THREADS_CALLING_TIME = """
import threading, time
leaks = 0
def run():
    global leaks
    for _ in range(5000):
        if time.time() > 1780000000:  # after 2026-05-28: the real date, not the fake one
            leaks += 1
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(leaks)
"""


def test_no_thread_ever_sees_the_real_date(tmp_path: Path) -> None:
    clock = tmp_path / "faketime"
    write_clock(clock, "2026-03-30 07:30:00")
    run = subprocess.run(
        [sys.executable, "-c", THREADS_CALLING_TIME],
        env={"PATH": "/usr/bin:/bin", **faketime_env(clock)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"
