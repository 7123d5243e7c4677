"""Bytes of event log per message: N customer messages (each a new conversation, routed)
and one agent reply each, through the running gateway's API; then the size of the events
table against the messages table. Not a test.

    .venv/bin/python -m bench.event_bytes [N]
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path

import aiohttp
import yaml

from gateway.app import Gateway
from gateway.config import load_config_text

TEXT = (
    "Hello, I was charged twice for my last order and I would like a refund of the second "
    "charge. The order number is in the subject. Thanks, Dana. "
) * 3  # ~450 characters: a typical short support message


def _config(db: Path) -> str:
    token = "bench-admin-token"
    return yaml.safe_dump(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "store": {"path": str(db)},
            "auth": {"tokens": [{"name": "admin", "role": "admin", "token": token}]},
            "agents": [
                {
                    "id": f"a{i}",
                    "name": f"Agent {i}",
                    "capacity": {"default": 10_000},
                    "queues": ["general"],
                    "presence": "online",
                }
                for i in range(3)
            ],
            "channels": [
                {
                    "name": "api",
                    "type": "api",
                    "inbound_token": "bench-channel-token",
                    "outbound_url": "http://127.0.0.1:9/none",
                    "allow_private_networks": True,
                    "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                }
            ],
            "routing": {
                "queues": [{"name": "general", "strategy": "least_busy"}],
                "default": {"queue": "general"},
            },
        }
    )


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        gw = Gateway(load_config_text(_config(db)))
        await gw.start()
        base = f"http://127.0.0.1:{gw.port}"
        async with aiohttp.ClientSession() as http:
            convs = []
            for i in range(n):
                async with http.post(
                    f"{base}/v1/channels/api/messages",
                    headers={"Authorization": "Bearer bench-channel-token"},
                    json={"external_id": f"m{i}", "text": TEXT, "from": {"id": f"c{i}"}},
                ) as r:
                    convs.append((await r.json())["conversation_id"])
            await asyncio.sleep(1.0)  # routed
            for cid in convs:
                async with http.post(
                    f"{base}/v1/conversations/{cid}/messages",
                    headers={"Authorization": "Bearer bench-admin-token"},
                    json={"text": "We are sorry: the refund is on its way."},
                ) as r:
                    assert r.status == 202, await r.text()
            await asyncio.sleep(0.5)
        await gw.stop()
        conn = sqlite3.connect(db)
        msgs = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        print(f"{n} conversations, {msgs} messages")
        total = 0
        for kind, count, size in conn.execute(
            "SELECT type, COUNT(*), SUM(LENGTH(CAST(data AS BLOB)) + LENGTH(type) + 16)"
            " FROM events GROUP BY type ORDER BY 3 DESC"
        ):
            total += size
            print(f"  {kind:24} {count:6} events {size / count:8.0f} bytes each")
        pages = (
            {
                name: conn.execute(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name=?", (name,)
                ).fetchone()[0]
                for name in ("events", "messages")
            }
            if _has_dbstat(conn)
            else {}
        )
        print(f"event rows: {total / msgs:.0f} bytes per message")
        if pages:
            print(f"pages: events {pages['events']} B, messages {pages['messages']} B")


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1")
    except sqlite3.Error:
        return False
    return True


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
