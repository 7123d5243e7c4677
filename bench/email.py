"""Email ingest benchmark: N messages from a real Dovecot mailbox.

In one run, against one private Dovecot (Debian's dovecot-imapd, started here):
- bare: aioimaplib logs in and fetches the same N messages (UID FETCH BODY.PEEK[]) in
  batches, doing nothing else — the floor any IMAP ingest pays;
- gateway: the email connector reads the mailbox through the whole gateway (parse, thread,
  store, route, mark \\Seen) until all N conversations exist.
Prints messages/s for both and the ratio (target >= 0.5).

    python -m bench.email --messages 1000   (as a module: a script named email.py would shadow the stdlib)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioimaplib
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "email")]

from email_support import Dovecot, Mailbox, make_mail, running_dovecot  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from gateway.config import load_config_text  # noqa: E402
from gateway.store.base import ConversationFilter  # noqa: E402


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


async def bare_fetch(server: Dovecot, name: str, n: int, batch: int) -> float:
    client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login(server.user, server.password)
    await client.select(name)
    started = time.perf_counter()
    fetched = 0
    for first in range(1, n + 1, batch):
        last = min(n, first + batch - 1)
        resp = await client.uid("fetch", f"{first}:{last}", "(UID BODY.PEEK[])")
        fetched += sum(1 for line in resp.lines if isinstance(line, bytearray))
    elapsed = time.perf_counter() - started
    await client.logout()
    if fetched != n:
        raise RuntimeError(f"bare fetch got {fetched} of {n} bodies")
    return n / elapsed


def config(server: Dovecot, name: str, db: Path) -> dict[str, Any]:
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
                },
                "smtp": {"host": "127.0.0.1", "port": 1, "tls": False},
            }
        ],
        "routing": {"queues": [{"name": "general"}], "default": {"queue": "general"}},
    }


async def gateway_ingest(server: Dovecot, name: str, n: int, tmp: Path) -> float:
    gw = Gateway(load_config_text(yaml.safe_dump(config(server, name, tmp / "gw.db"))))
    started = time.perf_counter()
    await gw.start()
    try:
        while True:
            rows, _ = await gw.store.list_conversations(ConversationFilter(limit=n))
            if len(rows) >= n:
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {len(rows)} of {n} conversations after 600 s")
            await asyncio.sleep(0.05)
        return n / (time.perf_counter() - started)
    finally:
        await gw.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument(
        "--batch", type=int, default=20, help="bare fetch batch (the connector's default)"
    )
    args = ap.parse_args()
    with running_dovecot() as server, tempfile.TemporaryDirectory() as tmp:
        box = await fill(server, "bench", args.messages)
        await box.close()
        bare = await bare_fetch(server, "bench", args.messages, args.batch)
        gateway = await gateway_ingest(server, "bench", args.messages, Path(tmp))
    print(f"# bench/email.py --messages {args.messages}")
    print(f"bare aioimaplib UID FETCH BODY.PEEK[] : {bare:8.0f} msg/s")
    print(f"gateway (IMAP → parse → store → route): {gateway:8.0f} msg/s")
    print(f"ratio gateway/bare                    : {gateway / bare:8.2f}   (target >= 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
