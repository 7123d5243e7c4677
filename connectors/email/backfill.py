"""Importing a mailbox's history: `switchboard email backfill --channel NAME --since DATE`.

Idempotent: every message goes to the core with the same external id (its Message-ID
qualified by sender and Date, or a hash of its bytes), so a second run only finds duplicates. Nothing is flagged or moved and
the live connector's resume point is left alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date

from connectors.base import (
    AuthFailed,
    CliCommand,
    CliHost,
    NotReady,
    OfflineChannel,
    Refused,
    Submit,
)
from connectors.email.imap import ImapConnection
from connectors.email.parse import ParsedEmail, parse_email, to_event
from connectors.email.settings import EmailSettings

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(d: date) -> str:
    return f"{d.day}-{_MONTHS[d.month - 1]}-{d.year}"


async def backfill(
    settings: EmailSettings,
    submit: Submit,
    since: date,
    progress: Callable[[int, int], None],
) -> int:
    """Submit every message of the mailbox received since `since` (IMAP SINCE, by internal
    date); returns how many the core did not have yet. `progress(done, total)` is called
    after each message. Raises NotReady / AuthFailed like the connector's start()."""
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
            for m in await imap.fetch(uids[i : i + batch]):
                parsed = parse_email(
                    m.raw,
                    max_attachment_bytes=settings.max_attachment_bytes,
                    our_address=settings.address,
                    message_id_domain=settings.id_domain,
                )
                if m.raw and not (isinstance(parsed, ParsedEmail) and parsed.own):
                    try:
                        result = await submit(to_event(parsed))
                    except Refused:  # kept in quarantine by the core: on to the next
                        pass
                    else:
                        if not result.duplicate:
                            imported += 1
                done += 1
                progress(done, total)
    finally:
        await imap.close()
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
            imported = await backfill(settings, channel.submit, since, _progress)
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
