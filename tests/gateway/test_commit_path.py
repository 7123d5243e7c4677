"""One commit path: handlers change state only through gateway/services.py."""

from __future__ import annotations

import re
from pathlib import Path

import gateway

CHANGES = (
    "ingest|add_outbound|apply_receipt|assign|transfer|resolve|reopen|set_presence|"
    "set_capacity|link_verified|unmerge|quarantine_add|quarantine_settle|claim"
)
# (a loop waking itself, `self.poke()`, is no hand-made wake-up of another)
BY_HAND = re.compile(rf"\bstore\.({CHANGES})\(|\.publish\(|(?<!self)\.poke\(")
ROOT = Path(gateway.__file__).parent


def test_no_handler_commits_publishes_or_wakes_by_hand() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in [
            *sorted((ROOT / "api").glob("*.py")),
            ROOT / "ingest.py",
            ROOT / "quarantine.py",
            ROOT / "verification.py",
            ROOT / "autoreply.py",
            ROOT / "dispatch.py",
            ROOT / "outbox.py",
        ]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BY_HAND.search(line)
    ]
    assert offenders == []
