"""Email ingest benchmark: N messages from a real Dovecot mailbox.

In one run, against one private Dovecot (Debian's dovecot-imapd, started here):
- baseline: aioimaplib logs in, fetches the same N messages (UID FETCH BODY.PEEK[]) in
  batches of 20 and parses each with the standard library (`policy.default`, headers
  read, body text taken) — the least any IMAP ingest that reads its mail pays. Measured
  twice: parsing inline (on the event loop, one core) and in a spawned process pool of
  the gateway's size (as the gateway parses: off the loop, in worker processes). The
  ratio is taken against the faster of the two;
- gateway: the email connector reads the mailbox through the whole gateway (parse in its
  worker pool, thread, store, route, mark \\Seen) until the N `message.received` events
  were published. The bench waits on the gateway's event bus (a callback that counts),
  never polls the API, so it costs the gateway nothing; the longest event-loop stall
  during the ingest is sampled (tests/looplag.py).
Prints messages/s for each and the ratio (target >= 0.5).

    python -m bench.email --messages 1000   (as a module: a script named email.py would shadow the stdlib)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aioimaplib
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "email")]

from email_support import Dovecot, Mailbox, make_mail, running_dovecot  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.config import load_config_text  # noqa: E402
from gateway.model import Event  # noqa: E402
from tests.looplag import LoopLag  # noqa: E402


async def fill(server: Dovecot, name: str, n: int) -> Mailbox:
    box = await Mailbox(server, name).open()
    for i in range(n):
        await box.append(
            make_mail(
                f"Order {i} question",
                sender=f"customer{i}@shop.test",
                body=f"Hello, about order {i}.\n\n-- \nC{i}",
            )
        )
    return box


def stdlib_parse(raw: bytes) -> int:
    """What the baseline does with each mail: parse it, read the headers a support inbox
    needs, take the body text."""
    msg = message_from_bytes(raw, policy=policy.default)
    for name in ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To"):
        msg.get(name)
    body = msg.get_body(("plain", "html"))  # type: ignore[attr-defined]
    return len(body.get_content()) if body is not None else 0


def stdlib_parse_batch(raws: list[bytes]) -> int:
    return sum(stdlib_parse(r) for r in raws)


async def baseline(
    server: Dovecot,
    name: str,
    n: int,
    batch: int,
    pool: ProcessPoolExecutor | None,
    workers: int = 1,
) -> float:
    """Messages/s of a bare fetch plus a standard-library parse (inline, or in `pool` of
    `workers` processes, one batch in flight while the next is fetched)."""
    client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.select(name)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    fetched = 0
    pending: list[asyncio.Future[int]] = []
    for first in range(1, n + 1, batch):
        last = min(n, first + batch - 1)
        resp = await client.uid("fetch", f"{first}:{last}", "(UID BODY.PEEK[])")
        raws = [bytes(line) for line in resp.lines if isinstance(line, bytearray)]
        fetched += len(raws)
        if pool is None:
            stdlib_parse_batch(raws)
        else:
            # split the batch over the workers, as the gateway parses a batch side by side
            size = max(1, len(raws) // max(1, workers))
            pending += [
                loop.run_in_executor(pool, stdlib_parse_batch, raws[i : i + size])
                for i in range(0, len(raws), size)
            ]
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    await client.logout()
    if fetched != n:
        raise RuntimeError(f"bare fetch got {fetched} of {n} bodies")
    return n / elapsed


def config(server: Dovecot, name: str, db: Path, workers: int, batch: int) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(db)},
        "agents": [
            {
                "id": "a",
                "name": "A",
                "capacity": {"default": 100000},
                "queues": ["general"],
                "presence": "online",
            }
        ],
        "channels": [
            {
                "name": "mail",
                "type": "email",
                "address": "support@example.com",
                "imap": {
                    "host": server.host,
                    "port": server.port,
                    "username": server.user,
                    "password": server.password,
                    "tls": False,
                    "mailbox": name,
                    "poll_interval": 0.2,
                    "batch_size": batch,
                },
                "smtp": {"host": "127.0.0.1", "port": 1, "tls": False},
                "parse": {"workers": workers},
            }
        ],
        "routing": {"queues": [{"name": "general"}], "default": {"queue": "general"}},
    }


async def gateway_ingest(
    server: Dovecot, name: str, n: int, tmp: Path, workers: int, batch: int
) -> tuple[float, float, float, LoopLag]:
    gw = Gateway(
        load_config_text(yaml.safe_dump(config(server, name, tmp / "gw.db", workers, batch)))
    )
    done = asyncio.Event()
    count = 0
    first: float | None = None

    def on_event(event: Event) -> None:
        nonlocal count, first
        if event.type in ("message.received", "message.quarantined"):
            count += 1
            if first is None:
                first = time.perf_counter()
            if count >= n:
                done.set()

    gw.bus.listen(on_event)
    started = time.perf_counter()
    lag = LoopLag()
    await gw.start()
    lag.start()
    try:
        await asyncio.wait_for(done.wait(), 600)
        end = time.perf_counter()
        assert first is not None
        return n / (end - started), (n - 1) / max(end - first, 1e-9), first - started, lag
    except TimeoutError:
        raise RuntimeError(f"only {count} of {n} messages after 600 s") from None
    finally:
        await lag.stop()
        await gw.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument(
        "--batch",
        type=int,
        default=20,
        help="UID FETCH batch, both sides (default: the connector's default)",
    )
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parse workers (both sides)"
    )
    args = ap.parse_args()
    with running_dovecot() as server, tempfile.TemporaryDirectory() as tmp:
        box = await fill(server, "bench", args.messages)
        await box.close()
        inline = await baseline(server, "bench", args.messages, args.batch, None)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            # start the workers first: the gateway's own start-up is timed, its workers'
            # start is not separable, so give the baseline the same warm start
            await asyncio.gather(
                *(
                    asyncio.get_running_loop().run_in_executor(pool, stdlib_parse_batch, [])
                    for _ in range(args.workers)
                )
            )
            pooled = await baseline(server, "bench", args.messages, args.batch, pool, args.workers)
        gateway, steady, first, lag = await gateway_ingest(
            server, "bench", args.messages, Path(tmp), args.workers, args.batch
        )
    best = max(inline, pooled)
    w = args.workers
    print(f"# python -m bench.email --messages {args.messages} --workers {w} --batch {args.batch}")
    print(f"baseline: fetch + stdlib parse, inline       : {inline:8.0f} msg/s")
    print(f"baseline: fetch + stdlib parse, {w} processes : {pooled:8.0f} msg/s")
    print(f"gateway: IMAP, parse pool, store, route, Seen : {gateway:8.0f} msg/s")
    print(f"  start-up to the first message {first:.2f} s, then {steady:.0f} msg/s")
    print(
        f"ratio gateway / best baseline                 : {gateway / best:8.2f}   (target >= 0.5)"
    )
    print(f"ratio after the first message                 : {steady / best:8.2f}")
    print(f"gateway event loop during the ingest: {lag}")


if __name__ == "__main__":
    asyncio.run(main())
