"""History import: idempotent, touches no flags."""

from __future__ import annotations

from datetime import date

from email_support import Dovecot, FakeCore, Mailbox, make_mail, make_settings, many_parts_mail

from connectors.base import RawItem
from connectors.email import backfill


async def test_backfill_imports_once_and_leaves_flags(
    dovecot: Dovecot, mailbox: Mailbox, core: FakeCore
) -> None:
    for i in range(3):
        await mailbox.append(make_mail(f"history {i}"), flags="\\Seen" if i else None)
    settings = make_settings(server=dovecot, mailbox=mailbox.name)
    seen: list[tuple[int, int]] = []
    n = await backfill(settings, core.submit, date(2000, 1, 1), lambda d, t: seen.append((d, t)))
    assert n == 3
    assert core.subjects() == ["history 0", "history 1", "history 2"]
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    again = await backfill(settings, core.submit, date(2000, 1, 1), lambda d, t: None)
    assert again == 0 and len(core.stored) == 3
    flags = await mailbox.flags()
    assert sorted("\\Seen" in f for f in flags.values()) == [False, True, True]
    # messages older than `since` (by arrival date) are left out
    assert await backfill(settings, core.submit, date(2999, 1, 1), lambda d, t: None) == 0


async def test_backfill_quarantines_a_mail_over_the_parse_limits(
    dovecot: Dovecot, mailbox: Mailbox, core: FakeCore
) -> None:
    await mailbox.append(make_mail("before"), flags="\\Seen")
    await mailbox.append(many_parts_mail(30_000), flags="\\Seen")
    await mailbox.append(make_mail("after"), flags="\\Seen")
    settings = make_settings(
        server=dovecot, mailbox=mailbox.name, parse={"workers": 2, "cpu_seconds": 0.5}
    )
    kept: list[tuple[RawItem, str]] = []

    async def quarantine(item: RawItem, reason: str) -> str:
        kept.append((item, reason))
        return "q1"

    progress: list[tuple[int, int]] = []
    n = await backfill(
        settings, core.submit, date(2000, 1, 1), lambda d, t: progress.append((d, t)),
        quarantine=quarantine,
    )  # fmt: skip
    assert n == 2 and core.subjects() == ["after", "before"]
    [(item, reason)] = kept
    assert reason == "mail too costly to read: the parser used more than 0.5 s of CPU time"
    assert item.content_type == "message/rfc822" and b"Subject: Many parts" in item.data
    assert progress[-1] == (3, 3)
