"""Pieces of the batched receive path that need no server."""

from __future__ import annotations

from connectors.email.connector import MailboxState
from connectors.email.imap import uid_set


def test_uid_set_collapses_runs() -> None:
    assert uid_set([]) == ""
    assert uid_set([4]) == "4"
    assert uid_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert uid_set([9, 1, 2, 2]) == "1:2,9"


def test_mark_all_stops_below_a_failed_uid() -> None:
    state = MailboxState(uidvalidity=1, uid=10)
    state.mark_all([11, 12, 14, 15], pending={13})
    assert state.uid == 12 and state.done == {14, 15}
    state.mark_all([13], pending=set())
    assert state.uid == 15 and state.done == set()
