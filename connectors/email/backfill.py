"""Importing a mailbox's history: `switchboard email backfill --channel NAME --since DATE`.

Idempotent: every message goes to the core with the same external id (its Message-ID
qualified by sender and Date, or a hash of its bytes), so a second run only finds duplicates. Nothing is flagged or moved and
the live connector's resume point is left alone. Mail is parsed in worker processes with
the channel's limits, like live mail; a mail over them is quarantined when a `quarantine`
is given, else skipped (and counted as such in the log).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import date

from connectors.base import (
    AuthFailed,
    CliCommand,
    CliHost,
    NotReady,
    OfflineChannel,
    Quarantine,
    RawItem,
    Refused,
    Submit,
)
from connectors.email.imap import ImapConnection
from connectors.email.parse import BounceReport, ParsedEmail, to_event
from connectors.email.parsepool import LimitExceeded, MailParser, TaskFailed
from connectors.email.settings import EmailSettings

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
log = logging.getLogger("switchboard.email.backfill")


def imap_date(d: date) -> str:
    return f"{d.day}-{_MONTHS[d.month - 1]}-{d.year}"


async def backfill(
    settings: EmailSettings,
    submit: Submit,
    since: date,
    progress: Callable[[int, int], None],
    *,
    quarantine: Quarantine | None = None,
    parser: MailParser | None = None,
) -> int:
    """Submit every message of the mailbox received since `since` (IMAP SINCE, by internal
    date); returns how many the core did not have yet. `progress(done, total)` is called
    after each message. Raises NotReady / AuthFailed like the connector's start()."""
    own_parser = parser is None
    mail_parser = parser or MailParser(settings, "backfill", log)
    imap = ImapConnection(settings.imap)
    await imap.connect()
    imported = 0
    try:
        uids = await imap.uid_search("SINCE", imap_date(since))
        total = len(uids)
        done = 0
        progress(0, total)
        batch = settings.imap.batch_size
        for i in range(0, total, batch):
            fetched = [m for m in await imap.fetch(uids[i : i + batch]) if m.raw]
            # parsed in parallel by the pool, handed to the core in UID order
            results = await asyncio.gather(
                *(mail_parser.parse(m.raw) for m in fetched), return_exceptions=True
            )
            for m, parsed in zip(fetched, results, strict=True):
                if isinstance(parsed, (ParsedEmail, BounceReport)):
                    if not (isinstance(parsed, ParsedEmail) and parsed.own):
                        try:
                            result = await submit(to_event(parsed))
                        except Refused:  # kept in quarantine by the core: on to the next
                            pass
                        else:
                            if not result.duplicate:
                                imported += 1
                elif isinstance(parsed, (LimitExceeded, TaskFailed)):
                    reason = (
                        f"mail too costly to read: the parser {parsed}"
                        if isinstance(parsed, LimitExceeded)
                        else f"unreadable mail: {parsed}"
                    )
                    if quarantine is None:
                        log.warning("backfill: UID %d skipped: %s", m.uid, reason)
                    else:
                        item = RawItem(
                            "message/rfc822",
                            m.raw,
                            metadata={"uid": m.uid, "mailbox": settings.imap.mailbox},
                        )
                        await quarantine(item, reason)
                elif isinstance(parsed, BaseException):
                    raise parsed
                done += 1
                progress(done, total)
            done += len(uids[i : i + batch]) - len(fetched)
    finally:
        await imap.close()
        if own_parser:
            await mail_parser.close()
    return imported


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", required=True)
    parser.add_argument("--since", required=True, help="first day to import, YYYY-MM-DD")


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _run(args: argparse.Namespace, host: CliHost) -> int:
    """Import a mailbox's history idempotently: mail the gateway has is skipped."""
    try:
        since = date.fromisoformat(args.since)
    except ValueError:
        print(f"--since takes a date like 2026-01-31, got {args.since!r}", file=sys.stderr)
        return 1

    async def work(channel: OfflineChannel) -> int:
        settings = channel.settings
        assert isinstance(settings, EmailSettings)
        try:
            imported = await backfill(
                settings, channel.submit, since, _progress, quarantine=channel.quarantine
            )
        except (NotReady, AuthFailed) as exc:
            print(f"\ncannot reach the mailbox: {exc}", file=sys.stderr)
            return 1
        print(f"\nimported {imported} new message(s) since {since}", file=sys.stderr)
        return 0

    return host.with_channel(args.config, args.channel, "email", work)


BACKFILL_COMMAND = CliCommand(
    group="email",
    group_help="email channel tools",
    name="backfill",
    help="import a mailbox's history idempotently",
    arguments=_arguments,
    run=_run,
)
