"""An IMAP mailbox and a Telegram polling bot on two real `switchboard run` processes
sharing one PostgreSQL, with Redis killed (issue 11): polling goes on, each mail and update is
taken once, a SIGKILLed poller is replaced by the survivor within 10 s while Redis is still
down, and after Redis is back everything is still taken once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.coord.test_cluster_pollers import (
    TAKEOVER,
    ExclusiveTelegram,
    cluster_config,
    dovecot,
    holder,
    mailbox,
    stored,
    submissions,
    telegram,
)
from tests.email.email_support import Dovecot, Mailbox, make_mail
from tests.gateway.conftest import config_text, wait_for
from tests.gateway.test_e2e_daemon import Daemon, free_port
from tests.redisserver import own_server

__all__ = ["dovecot", "mailbox", "telegram"]


@pytest.mark.timeout(240)
async def test_pollers_run_once_and_are_taken_over_while_redis_is_down(
    tmp_path: Path,
    pg_dsn: str,
    dovecot: Dovecot,
    mailbox: Mailbox,
    telegram: ExclusiveTelegram,
) -> None:
    redis = own_server()
    cfg = cluster_config(tmp_path, pg_dsn, redis.url, dovecot, mailbox, telegram)
    daemons: list[Daemon] = []
    users = [telegram.user(8000 + i, first_name=f"U{i}") for i in range(6)]
    imap_lease = f"channel:mail:imap:{mailbox.name}"

    async def mail_and_updates(tag: str, n: int) -> tuple[set[str], set[str]]:
        ids = {f"<{tag}-{i}-{uuid.uuid4().hex[:6]}@customer.test>" for i in range(n)}
        for mid in sorted(ids):
            await mailbox.append(make_mail(f"{tag} mail", sender="c@customer.test", message_id=mid))
        refs = set()
        for i in range(n):
            message = telegram.push_message(users[i % len(users)], f"{tag} update {i}")["message"]
            refs.add(f"{message['chat']['id']}:{message['message_id']}")
        return ids, refs

    async def all_stored(mails: set[str], updates: set[str]) -> bool:
        have_mail, have_tg = await stored(pg_dsn, "mail"), await stored(pg_dsn, "tg")
        return mails <= set(have_mail) and updates <= set(have_tg)

    try:
        for i in range(2):
            cfg["server"]["port"] = port = free_port()
            config = tmp_path / f"gateway{i}.yaml"
            config.write_text(config_text(cfg))
            daemons.append(Daemon(config, port, tmp_path / f"daemon{i}.log"))
        for d in daemons:
            await d.start()
        first, first_updates = await mail_and_updates("redis-up", 3)
        await wait_for(lambda: all_stored(first, first_updates), timeout=30, interval=0.2)

        # 1. Redis gone: polling goes on, on one instance each
        redis.kill()
        mails, updates = await mail_and_updates("redis-down", 6)
        await wait_for(lambda: all_stored(mails, updates), timeout=30, interval=0.2)

        # 2. SIGKILL the mailbox's poller, Redis still down: the survivor takes over
        victim = holder(daemons, imap_lease)
        victim.kill()
        killed_at = time.monotonic()
        after, after_updates = await mail_and_updates("after-kill", 3)
        await wait_for(lambda: all_stored({min(after)}, set()), timeout=TAKEOVER + 10)
        took = time.monotonic() - killed_at
        assert took <= TAKEOVER, f"polling of mail resumed {took:.1f} s after the kill"
        await wait_for(lambda: all_stored(after, after_updates), timeout=30, interval=0.2)

        # 3. Redis back: still each once
        redis.start()
        back, back_updates = await mail_and_updates("redis-back", 3)
        await wait_for(lambda: all_stored(back, back_updates), timeout=30, interval=0.2)

        every_mail = first | mails | after | back
        every_update = first_updates | updates | after_updates | back_updates
        have_mail, have_tg = await stored(pg_dsn, "mail"), await stored(pg_dsn, "tg")
        assert sorted(have_mail) == sorted(every_mail)
        assert sorted(have_tg) == sorted(every_update)
        for mid in mails | back:  # handed to the core once, by one instance
            assert len(submissions(daemons, mid)) == 1, submissions(daemons, mid)
        assert telegram.conflicts == 0  # never two getUpdates at once
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        redis.close()
