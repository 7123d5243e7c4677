"""An IMAP mailbox and a Telegram polling bot configured on three real `switchboard run`
processes sharing one PostgreSQL and one Redis: one instance polls each (a lease), every mail
and every update is taken exactly once, and when the poller is SIGKILLed a survivor resumes
polling within 10 s."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.email.email_support import Dovecot, Mailbox, make_mail, running_dovecot
from tests.gateway.conftest import base_config, config_text, wait_for
from tests.gateway.test_e2e_daemon import Daemon, free_port
from tests.standins.telegram import TelegramStandin

TAKEOVER = 10.0  # the promise: polling resumes on a survivor within 10 s of a kill


class ExclusiveTelegram(TelegramStandin):
    """Like Telegram: a getUpdates while another one is being answered is refused with 409
    Conflict (two pollers of one bot). `conflicts` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.polling = 0
        self.conflicts = 0

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.polling:
            self.conflicts += 1
            return self._error(409, "Conflict: terminated by other getUpdates request")
        self.polling += 1
        try:
            return await super()._m_getUpdates(params)
        finally:
            self.polling -= 1


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
async def mailbox(dovecot: Dovecot) -> AsyncIterator[Mailbox]:
    box = await Mailbox(dovecot, f"t{uuid.uuid4().hex[:10]}").open()
    try:
        yield box
    finally:
        await box.close()


@pytest.fixture
async def telegram() -> AsyncIterator[ExclusiveTelegram]:
    standin = ExclusiveTelegram()
    await standin.start()
    yield standin
    await standin.close()


def cluster_config(
    tmp_path: Path,
    pg_dsn: str,
    redis_url: str,
    dovecot: Dovecot,
    mailbox: Mailbox,
    telegram: TelegramStandin,
) -> dict[str, Any]:
    cfg = base_config(tmp_path / "unused.sqlite")
    cfg["store"] = {"backend": "postgres", "dsn": pg_dsn}
    cfg["coordination"] = {"redis": redis_url}
    cfg["channels"] += [
        {
            "name": "mail",
            "type": "email",
            "address": "support@example.com",
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "username": dovecot.user,
                "password": dovecot.password,
                "tls": False,
                "mailbox": mailbox.name,
                "idle": False,
                "poll_interval": 0.3,
                "retry_interval": 0.3,
                "timeout": 5,
            },
            "smtp": {"host": "127.0.0.1", "port": 9, "tls": False, "starttls": False},
        },
        {
            "name": "tg",
            "type": "telegram",
            "token": telegram.token,
            "api_base_url": telegram.url,
            "poll_timeout": 1,
            "request_timeout": 3,
        },
    ]
    return cfg


async def stored(pg_dsn: str, channel: str) -> list[str]:
    """External ids of the inbound messages stored for `channel` (one row each; a mail's
    Message-ID without the `#<digest>` the core adds)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT external_id FROM messages WHERE channel=$1 AND direction='in'", channel
        )
    finally:
        await conn.close()
    return [str(r["external_id"]).split("#")[0] for r in rows]


def holder(daemons: list[Daemon], lease: str) -> Daemon:
    """The living daemon that took `lease` last (its log says so)."""
    best: tuple[float, Daemon] | None = None
    for d in daemons:
        if d.proc is None or d.proc.poll() is not None:
            continue
        for line in d.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "lease acquired" and entry.get("lease") == lease:
                at = float(entry.get("token", 0))
                if best is None or at > best[0]:
                    best = (at, d)
    assert best is not None, f"nobody holds {lease}"
    return best[1]


def submissions(daemons: list[Daemon], marker: str) -> list[str]:
    """Log lines of every daemon (living or dead) containing `marker`."""
    return [line for d in daemons for line in d.log.read_text().splitlines() if marker in line]


@pytest.mark.timeout(240)
async def test_one_poller_per_mailbox_and_bot_and_takeover_after_sigkill(
    tmp_path: Path,
    pg_dsn: str,
    redis_url: str,
    dovecot: Dovecot,
    mailbox: Mailbox,
    telegram: ExclusiveTelegram,
) -> None:
    cfg = cluster_config(tmp_path, pg_dsn, redis_url, dovecot, mailbox, telegram)
    daemons: list[Daemon] = []
    try:
        for i in range(3):
            cfg["server"]["port"] = port = free_port()
            config = tmp_path / f"gateway{i}.yaml"
            config.write_text(config_text(cfg))
            daemons.append(Daemon(config, port, tmp_path / f"daemon{i}.log"))
        # one after the other: the first migrates the empty database (and a shared 2-core
        # machine starts three Pythons slowly)
        for d in daemons:
            await d.start()

        imap_lease = f"channel:mail:imap:{mailbox.name}"
        tg_lease = "channel:tg:polling"
        users = [telegram.user(7000 + i, first_name=f"U{i}") for i in range(12)]

        order: dict[str, str] = {}  # tag -> the first update pushed

        async def mail_and_updates(tag: str, n: int) -> tuple[set[str], set[str]]:
            """`n` mails (appended in sorted order) and `n` updates."""
            ids = {f"<{tag}-{i}-{uuid.uuid4().hex[:6]}@customer.test>" for i in range(n)}
            for mid in sorted(ids):
                await mailbox.append(
                    make_mail(f"{tag} mail", sender="c@customer.test", message_id=mid)
                )
            refs = set()
            for i in range(n):
                update = telegram.push_message(users[i % len(users)], f"{tag} update {i}")
                message = update["message"]
                refs.add(f"{message['chat']['id']}:{message['message_id']}")
                order.setdefault(tag, f"{message['chat']['id']}:{message['message_id']}")
            return ids, refs

        async def all_stored(mails: set[str], updates: set[str]) -> bool:
            have_mail, have_tg = await stored(pg_dsn, "mail"), await stored(pg_dsn, "tg")
            return mails <= set(have_mail) and updates <= set(have_tg)

        async def resumed_within(
            killed_at: float, mail: str | None, update: str | None, what: str
        ) -> None:
            """The first thing that arrived after the kill is stored within TAKEOVER."""
            await wait_for(
                lambda: all_stored({mail} if mail else set(), {update} if update else set()),
                timeout=TAKEOVER + 10,
                interval=0.1,
            )
            took = time.monotonic() - killed_at
            assert took <= TAKEOVER, f"polling of {what} resumed {took:.1f} s after the kill"

        # 1. all three up: each mail and each update taken once, by one poller
        mails, updates = await mail_and_updates("steady", 12)
        await wait_for(lambda: all_stored(mails, updates), timeout=30, interval=0.2)
        have_mail, have_tg = await stored(pg_dsn, "mail"), await stored(pg_dsn, "tg")
        assert sorted(have_mail) == sorted(mails) and sorted(have_tg) == sorted(updates)
        for mid in mails:  # handed to the core once, by one instance: no duplicate submit
            assert len(submissions(daemons, mid)) == 1, submissions(daemons, mid)
        assert telegram.conflicts == 0  # never two getUpdates at once
        # one instance polled the mailbox, one the bot
        assert (
            sum(
                1
                for d in daemons
                if "lease acquired" in d.log.read_text() and imap_lease in d.log.read_text()
            )
            == 1
        )

        # 2. SIGKILL the mailbox's poller: a survivor takes the mail arriving after it
        victim = holder(daemons, imap_lease)
        victim.kill()
        killed_at = time.monotonic()
        after, updates_after = await mail_and_updates("after-imap-kill", 4)
        await resumed_within(killed_at, min(after), None, "mail")
        await wait_for(lambda: all_stored(after, updates_after), timeout=30, interval=0.2)
        assert holder(daemons, imap_lease) is not victim

        # 3. SIGKILL the bot's poller (maybe the same survivor): the last one takes over
        victim = holder(daemons, tg_lease)
        victim.kill()
        killed_at = time.monotonic()
        mails2, updates2 = await mail_and_updates("after-tg-kill", 4)
        await resumed_within(killed_at, None, order["after-tg-kill"], "the bot")
        await wait_for(lambda: all_stored(mails2, updates2), timeout=30, interval=0.2)

        # nothing was stored twice, whatever the kills interrupted
        everything_mail = mails | after | mails2
        everything_tg = updates | updates_after | updates2
        have_mail, have_tg = await stored(pg_dsn, "mail"), await stored(pg_dsn, "tg")
        assert sorted(have_mail) == sorted(everything_mail)
        assert sorted(have_tg) == sorted(everything_tg)
        assert telegram.conflicts == 0
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
