"""Importing a mailbox's history: `switchboard email backfill --channel NAME --since DATE`.

Idempotent: every message goes to the core with the same external id (its Message-ID
qualified by sender and Date, or a hash of its bytes), so a second run only finds duplicates. Nothing is flagged or moved and
the live connector's resume point is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from connectors.base import Refused, Submit
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
