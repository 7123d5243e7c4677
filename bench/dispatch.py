"""Dispatch benchmark: how long one routing pass holds the event loop, with a backlog.

An in-process store (SQLite in a temp dir) gets `--waiting` conversations through the
store's own ingest; then a `Dispatcher` runs passes while a ticker on the same loop
records the longest gap between its ticks (the loop was blocked that long):
1. every agent full: the pass should cost ~nothing, whatever waits;
2. every agent given room for all of them: one pass assigns the whole backlog.
Baseline, in the same run: the same ticker with no pass running. (It uses only what the
dispatcher and store had before issue 10, so it runs on the old code too.)

    python -m bench.dispatch --waiting 10000 --agents 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from connectors.base import Identity, InboundMessage
from gateway.config import load_config_text
from gateway.dispatch import Dispatcher
from gateway.events import EventBus
from gateway.store.base import IngestRequest
from gateway.store.sqlite import SqliteStore
from router import Classification


def config(agents: int, db: Path) -> str:
    lines = [
        "store: {path: '" + str(db) + "'}",
        "channels: [{name: api, type: api, inbound_token: bench-dispatch-token}]",
        "routing:",
        "  queues: [{name: general, strategy: least_busy}, {name: billing, strategy: skills}]",
        "  default: {queue: general}",
        "agents:",
    ]
    for i in range(agents):
        lines.append(
            f"  - {{id: a{i:04d}, name: A{i}, queues: [general, billing],"
            f" skills: {{billing: {1 + i % 10}}}, capacity: {{default: 0}}, presence: online}}"
        )
    return "\n".join(lines) + "\n"


class Ticker:
    """Records the longest gap between ticks of a 1 ms sleep loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last)
            last = now

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0.002)  # the ticker is ticking
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.002)  # one more tick sees a block that ended the pass
        assert self._task is not None
        self._task.cancel()


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--waiting", type=int, default=10_000)
    ap.add_argument("--agents", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "d.db"
        cfg = load_config_text(config(args.agents, db)).config
        store = SqliteStore(db)
        await store.open()
        await store.sync_agents([(a.id, "online", {"default": 0}) for a in cfg.agents])

        def classify(queue: str, skills: dict[str, int]) -> object:
            return lambda attrs: Classification(queue, 1, skills, [], None, [])  # type: ignore[arg-type]

        now = time.time()
        await asyncio.gather(
            *(
                store.ingest(
                    IngestRequest(
                        "api",
                        "api",
                        InboundMessage(f"m{i}", Identity("api", f"c{i}"), "hello"),
                        classify(  # type: ignore[arg-type]
                            "billing" if i % 3 == 0 else "general",
                            {"billing": 1 + i % 9} if i % 3 == 0 else {},
                        ),
                        now + i * 0.001,
                        3600,
                    )
                )
                for i in range(args.waiting)
            )
        )
        dispatcher = Dispatcher(store, EventBus(), cfg, time.time)
        async with Ticker() as idle:
            await asyncio.sleep(0.5)
        async with Ticker() as full:
            started = time.perf_counter()
            await dispatcher.run_pass()
            full_s = time.perf_counter() - started
        per_agent = -(-args.waiting // args.agents)
        for a in cfg.agents:
            await store.set_capacity(a.id, {"default": per_agent}, time.time())
        async with Ticker() as drain:
            started = time.perf_counter()
            while await dispatcher.run_pass():
                pass
            drain_s = time.perf_counter() - started
        left = len((await store.routing_snapshot()).waiting)
        await store.close()
    print(f"# bench/dispatch.py --waiting {args.waiting} --agents {args.agents}")
    print(f"idle loop (baseline)                   : longest gap {idle.worst * 1000:7.1f} ms")
    print(
        f"pass with every agent full             : {full_s * 1000:7.1f} ms,"
        f" longest gap {full.worst * 1000:7.1f} ms"
    )
    print(
        f"pass assigning {args.waiting - left} of {args.waiting} waiting"
        f"     : {drain_s * 1000:7.1f} ms, longest gap {drain.worst * 1000:7.1f} ms (target <= 20)"
    )


if __name__ == "__main__":
    asyncio.run(main())
