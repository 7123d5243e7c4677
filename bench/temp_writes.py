"""Where the gateway's writes go, per message: the database, its WAL, and SQLite's temp
files (the statement journal of a savepoint spills there unless `temp_store=MEMORY`).

Runs `switchboard run` under `strace -f -y` (file names with each write) while N messages
go through the `api` channel, then sums the bytes written per kind of file.

    python -m bench.temp_writes --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from bench.ingest import ROOT, free_port, gateway_config, load, wait_up

# 12345 pwrite64(7</tmp/x/gw.db-wal>, "..."..., 4096, 8192) = 4096
_WRITE = re.compile(r"(?:pwrite64|write|pwritev2?|writev)\(\d+<([^>]*)>.*\)\s+=\s+(\d+)\s*$")


def kind(path: str) -> str:
    if path.endswith("-wal"):
        return "WAL"
    if path.endswith("-shm"):
        return "shm"
    if path.endswith(".db"):
        return "database"
    if "etilqs_" in path or "(deleted)" in path:
        return "SQLite temp files"
    if path.startswith(("socket:", "pipe:", "anon_inode:", "/dev/")):
        return "sockets/pipes"
    return "other files"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("strace is needed: apt-get install -y strace")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        port = free_port()
        config = tmpdir / "gateway.yaml"
        config.write_text(yaml.safe_dump(gateway_config(port, tmpdir / "gw.db", 10)))
        trace = tmpdir / "trace"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHBOARD_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)], env=env
        )
        try:
            await wait_up(port, proc)
            await load(port, 200, args.concurrency, "warm")
            tracer = subprocess.Popen(
                [
                    strace,
                    "-f",
                    "-y",
                    "-qq",
                    "-e",
                    "trace=write,pwrite64,writev,pwritev,pwritev2",
                    "-o",
                    str(trace),
                    "-p",
                    str(proc.pid),
                ]
            )
            await asyncio.sleep(1.0)
            result = await load(port, args.messages, args.concurrency, "run")
            await asyncio.sleep(0.5)
            tracer.terminate()
            tracer.wait(20)
        finally:
            proc.terminate()
            proc.wait(20)
        written: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        for line in trace.read_text(errors="replace").splitlines():
            m = _WRITE.search(line)
            if m:
                written[kind(m.group(1))] += int(m.group(2))
                calls[kind(m.group(1))] += 1
    print(
        f"# bench/temp_writes.py --messages {args.messages} ({result['rate']:.0f} msg/s under strace)"
    )
    for k, n in written.most_common():
        print(
            f"{k:<20}: {n / args.messages:10.0f} B/message  {calls[k] / args.messages:6.2f} writes/message"
        )


if __name__ == "__main__":
    asyncio.run(main())
