"""Mail is not acknowledged while the store cannot take it: with PostgreSQL stopped a new
mail stays unseen in the IMAP mailbox, and once the server is back it is stored, once,
and only then flagged seen."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail, seen

from tests.cluster.servers import OwnPg, query
from tests.gateway.conftest import gateway_factory, wait_for

__all__ = ["gateway_factory"]


async def test_mail_stays_unseen_until_postgres_is_back(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    pg = OwnPg()
    pg.start()
    try:
        cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
        cfg["store"] = {"backend": "postgres", "dsn": pg.dsn, "pool_size": 3}
        gw, client = await gateway_factory(cfg)
        first = await mailbox.append(make_mail("Where is my parcel?", sender="a@customer.test"))
        await wait_for(lambda: seen(mailbox, first), timeout=45)

        pg.pause()
        later = await mailbox.append(make_mail("Still waiting", sender="b@customer.test"))
        await asyncio.sleep(4)  # twenty polls and retries of the connector
        flags = await mailbox.flags()
        assert "\\Seen" not in flags[later], flags
        status, body = await client.call("GET", "/readyz", token=None)
        assert status == 503 and body["store"] == "down" and "reason" in body

        pg.resume()
        await wait_for(lambda: seen(mailbox, later), timeout=45)
        rows = await query(
            pg.dsn, "SELECT subject FROM messages WHERE channel='mail' ORDER BY created_at"
        )
        assert [r["subject"] for r in rows] == ["Where is my parcel?", "Still waiting"]
        assert gw.store.down_reason() is None
    finally:
        pg.stop()
