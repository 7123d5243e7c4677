"""The receive side against a real Dovecot: IDLE, resume by UID, \\Seen only after submit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from email_support import (
    ADDRESS,
    Dovecot,
    FakeCore,
    Mailbox,
    MemoryKV,
    free_port,
    make_mail,
    make_settings,
    seen,
)

from connectors.base import AuthFailed, ConnectorContext, NotReady
from connectors.email import EmailConnector
from connectors.email.imap import ImapConnection
from tests.gateway.conftest import wait_for


def connector(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, **kw: object
) -> EmailConnector:
    return EmailConnector("support", make_settings(server=dovecot, mailbox=mailbox.name, **kw), ctx)


async def started(kv: MemoryKV, mailbox: Mailbox) -> bool:
    """The connector has made its first pass (its position is saved)."""
    return await kv.get(f"imap:{mailbox.name}") is not None


async def test_mail_before_start_and_while_running_via_idle(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    await mailbox.append(make_mail("before start 1"))
    await mailbox.append(make_mail("before start 2"))
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(2)
        assert core.subjects() == ["before start 1", "before start 2"]
        assert conn._imap is not None and conn._imap.has("IDLE")
        # a message arriving while we IDLE is pushed, long before the 25-minute re-IDLE
        await wait_for(lambda: seen(mailbox), timeout=5)  # first pass done: idling
        await mailbox.append(make_mail("while running"))
        await core.wait_for(3, timeout=5)
        assert "while running" in core.subjects()
    finally:
        await conn.stop()
    flags = await mailbox.flags()
    assert all("\\Seen" in f for f in flags.values()), flags
    msg = next(m for m in core.stored.values() if m.subject == "while running")
    assert msg.sender.address == "alice@customer.test"
    assert msg.sender_name == "Alice"
    assert msg.raw is not None and b"Subject: while running" in msg.raw


async def test_restart_resumes_without_duplicates_or_gaps(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    for i in range(3):
        await mailbox.append(make_mail(f"first batch {i}"))
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    await core.wait_for(3)
    await conn.stop()
    # mail arriving while we are down, one of them already read by a human in webmail
    await mailbox.append(make_mail("while down 1"))
    await mailbox.append(make_mail("while down 2"), flags="\\Seen")
    conn2 = connector(dovecot, mailbox, ctx)
    await conn2.start()
    try:
        await core.wait_for(5)
        # would a later pass submit anything again? It would do so before this one
        await mailbox.append(make_mail("later"))
        await core.wait_for(6)
    finally:
        await conn2.stop()
    assert len(core.calls) == 6, [c.subject for c in core.calls]  # type: ignore[union-attr]
    assert core.subjects() == [
        "first batch 0",
        "first batch 1",
        "first batch 2",
        "later",
        "while down 1",
        "while down 2",
    ]


async def test_seen_only_after_submit_and_failed_submit_is_retried(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore, kv: MemoryKV
) -> None:
    core.fail_for.add("fragile")
    ok_uid = await mailbox.append(make_mail("fine"))
    bad_uid = await mailbox.append(make_mail("fragile one"))
    after_uid = await mailbox.append(make_mail("after it"))
    conn = connector(dovecot, mailbox, ctx, imap={"retry_interval": 30})
    await conn.start()
    try:
        await core.wait_for(2)
        flags = await wait_for(lambda: seen(mailbox, ok_uid, after_uid), timeout=5)
    finally:
        await conn.stop()
    assert "\\Seen" not in flags[bad_uid], "a message the core did not take must stay unseen"
    assert sum(1 for c in core.calls if c.subject == "fragile one") >= 1  # type: ignore[union-attr]

    # the core is healthy again; a new instance (after a restart) picks the message up
    core.fail_for.clear()
    conn2 = connector(dovecot, mailbox, ctx)
    await conn2.start()
    try:
        await core.wait_for(3)
        await wait_for(lambda: seen(mailbox, bad_uid), timeout=5)
    finally:
        await conn2.stop()
    assert core.subjects() == ["after it", "fine", "fragile one"]
    # the ones that went through the first time were not fetched and submitted again
    assert sum(1 for c in core.calls if c.subject == "fine") == 1  # type: ignore[union-attr]
    assert sum(1 for c in core.calls if c.subject == "after it") == 1  # type: ignore[union-attr]


async def test_failed_submit_retried_while_running(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    core.fail_for.add("flaky")
    uid = await mailbox.append(make_mail("flaky"))
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await wait_for(lambda: core.calls, timeout=5)  # the submit was tried, and failed
        assert "\\Seen" not in (await mailbox.flags())[uid]
        core.fail_for.clear()
        await core.wait_for(1, timeout=5)  # retried after imap.retry_interval
        await wait_for(lambda: seen(mailbox, uid), timeout=5)
    finally:
        await conn.stop()


async def test_uidvalidity_change_resyncs_without_loss(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    old = [make_mail(f"old {i}") for i in range(2)]
    for raw in old:
        await mailbox.append(raw)
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    await core.wait_for(2)
    await conn.stop()
    # the mailbox is restored from a backup: same messages, new UIDVALIDITY, plus new mail
    await mailbox.recreate()
    for raw in old:
        await mailbox.append(raw)
    await mailbox.append(make_mail("new after restore"))
    conn2 = connector(dovecot, mailbox, ctx)
    await conn2.start()
    try:
        await core.wait_for(3)
        await wait_for(lambda: seen(mailbox), timeout=5)
    finally:
        await conn2.stop()
    assert core.subjects() == ["new after restore", "old 0", "old 1"]
    # the old ones were offered again and the core recognised them by external_id
    assert len(core.calls) == 5


async def test_move_to_folder(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    done = mailbox.name + "-done"
    await mailbox.append(make_mail("to be moved"))
    conn = connector(dovecot, mailbox, ctx, imap={"move_to": done})
    await conn.start()
    try:
        await core.wait_for(1)
        await wait_for(lambda: _moved(mailbox, done), timeout=5)
    finally:
        await conn.stop()
    assert await mailbox.flags() == {}
    assert len(await mailbox.flags(done)) == 1


async def _moved(mailbox: Mailbox, folder: str) -> bool:
    return len(await mailbox.flags(folder)) == 1


async def test_polling_without_idle(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore, kv: MemoryKV
) -> None:
    conn = connector(dovecot, mailbox, ctx, imap={"idle": False, "poll_interval": 0.2})
    await conn.start()
    try:
        await wait_for(lambda: started(kv, mailbox), timeout=5)  # a later poll finds it
        await mailbox.append(make_mail("polled"))
        await core.wait_for(1, timeout=5)
    finally:
        await conn.stop()
    assert core.subjects() == ["polled"]


async def test_own_mail_is_skipped_and_marked_seen(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    own_from = await mailbox.append(make_mail("our reply", sender=f"Support <{ADDRESS}>"))
    own_id = await mailbox.append(make_mail("looped", message_id="<sb.abc123@mail.example.com>"))
    await mailbox.append(make_mail("customer"))
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(1)
        await wait_for(lambda: seen(mailbox), timeout=5)  # the whole batch was handled
    finally:
        await conn.stop()
    assert core.subjects() == ["customer"]
    assert len(core.calls) == 1
    flags = await mailbox.flags()
    assert "\\Seen" in flags[own_from] and "\\Seen" in flags[own_id]


async def test_start_errors(dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext) -> None:
    down = EmailConnector("x", make_settings(server=dovecot, imap={"port": free_port()}), ctx)
    with pytest.raises(NotReady):
        await down.start()
    wrong = EmailConnector("x", make_settings(server=dovecot, imap={"password": "wrong"}), ctx)
    with pytest.raises(AuthFailed):
        await wrong.start()


async def test_unparseable_bytes_still_submitted(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    junk = b"\xff\xfe garbage without headers \r\n\r\n\x80\x81 body \xe9t\xe9\r\n"
    uid = await mailbox.append(junk)
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(1)
        await wait_for(lambda: seen(mailbox, uid), timeout=5)
    finally:
        await conn.stop()
    (msg,) = core.stored.values()
    assert msg.external_id.startswith("sha256:")
    assert msg.raw == junk


async def test_first_start_takes_mail_that_lands_while_it_looks_around(
    dovecot: Dovecot,
    mailbox: Mailbox,
    ctx: ConnectorContext,
    core: FakeCore,
    kv: MemoryKV,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race of a first start, made to happen on purpose: a mail lands right after the
    connector's first IMAP search, and a person reads it in webmail at once."""
    history = await mailbox.append(make_mail("read long ago"), flags="\\Seen")
    landed: list[int] = []
    real_search = ImapConnection.uid_search

    async def search_then_mail_lands(self: ImapConnection, *criteria: str) -> list[int]:
        result = await real_search(self, *criteria)
        if not landed:
            landed.append(await mailbox.append(make_mail("landed mid-start"), flags="\\Seen"))
            await self.noop()  # the server has told this session about it
        return result

    monkeypatch.setattr(ImapConnection, "uid_search", search_then_mail_lands)
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(1, timeout=5)
        # and later mail, of course
        await mailbox.append(make_mail("after start"))
        await core.wait_for(2, timeout=5)
    finally:
        await conn.stop()
    assert landed and landed[0] > history
    # read mail from before the start is history (for `switchboard email backfill`)
    assert core.subjects() == ["after start", "landed mid-start"]
    state: dict[str, Any] = json.loads(await kv.get(f"imap:{mailbox.name}") or "{}")
    assert state["uid"] >= landed[0]


async def test_first_start_reads_from_the_oldest_unseen_mail(
    dovecot: Dovecot, mailbox: Mailbox, ctx: ConnectorContext, core: FakeCore
) -> None:
    await mailbox.append(make_mail("old and read"), flags="\\Seen")
    await mailbox.append(make_mail("unread"))
    await mailbox.append(make_mail("read after the unread one"), flags="\\Seen")
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(2, timeout=5)
        await mailbox.append(make_mail("sentinel"))  # anything older would come first
        await core.wait_for(3, timeout=5)
    finally:
        await conn.stop()
    assert core.subjects() == ["read after the unread one", "sentinel", "unread"]


async def test_mail_landing_while_a_batch_is_acknowledged_is_not_left_for_later(
    dovecot: Dovecot,
    mailbox: Mailbox,
    ctx: ConnectorContext,
    core: FakeCore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mail that lands while the connector flags a batch \\Seen is announced with that
    command's answer, not during the IDLE that follows: it must still be read at once,
    not after the 25-minute IDLE timeout."""
    await mailbox.append(make_mail("first"))
    real_mark_seen = ImapConnection.mark_seen
    landed: list[int] = []

    async def mail_lands_then_mark(self: ImapConnection, uids: Any) -> None:
        if not landed:
            landed.append(await mailbox.append(make_mail("landed during the ack")))
        await real_mark_seen(self, uids)

    monkeypatch.setattr(ImapConnection, "mark_seen", mail_lands_then_mark)
    conn = connector(dovecot, mailbox, ctx)
    await conn.start()
    try:
        await core.wait_for(2, timeout=5)
    finally:
        await conn.stop()
    assert core.subjects() == ["first", "landed during the ack"]
