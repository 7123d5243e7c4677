"""Which conversation an inbound message joins: one row per situation."""

from __future__ import annotations

import pytest

from gateway.domain.threading import Candidate, Placement, place

NOW = 1_000_000.0
WINDOW = 3600.0


def c(
    cid: str, status: str, updated: float = NOW - 100, resolved: float | None = None
) -> Candidate:
    return Candidate(cid, status, updated, resolved)


CASES: list[tuple[str, Candidate | None, list[Candidate], Placement]] = [
    ("a first message opens a conversation", None, [], Placement("create")),
    ("the open one is joined", None, [c("a", "open")], Placement("join", "a")),
    ("an assigned one is joined", None, [c("a", "assigned")], Placement("join", "a")),
    ("a pending one is joined", None, [c("a", "pending")], Placement("join", "a")),
    ("a closed one is never joined", None, [c("a", "closed")], Placement("create")),
    (
        "resolved within the window: reopened",
        None,
        [c("a", "resolved", resolved=NOW - WINDOW + 1)],
        Placement("reopen", "a"),
    ),
    (
        "resolved exactly at the window's edge: reopened",
        None,
        [c("a", "resolved", resolved=NOW - WINDOW)],
        Placement("reopen", "a"),
    ),
    (
        "resolved before the window: a new conversation",
        None,
        [c("a", "resolved", resolved=NOW - WINDOW - 1)],
        Placement("create"),
    ),
    (
        "the active one wins over one resolved within the window",
        None,
        [c("r", "resolved", updated=NOW - 1, resolved=NOW - 1), c("a", "open", updated=NOW - 50)],
        Placement("join", "a"),
    ),
    (
        "of two active ones, the most recently updated",
        None,
        [c("old", "open", updated=NOW - 500), c("new", "assigned", updated=NOW - 5)],
        Placement("join", "new"),
    ),
    (
        "of two resolved within the window, the most recently updated",
        None,
        [
            c("r1", "resolved", updated=NOW - 50, resolved=NOW - 60),
            c("r2", "resolved", updated=NOW - 10, resolved=NOW - 70),
        ],
        Placement("reopen", "r2"),
    ),
    (
        "a thread key to an active conversation wins over the latest active one",
        c("t", "open", updated=NOW - 900),
        [c("t", "open", updated=NOW - 900), c("a", "open", updated=NOW - 1)],
        Placement("join", "t"),
    ),
    (
        "a thread key to one resolved within the window reopens it",
        c("t", "resolved", resolved=NOW - 10),
        [c("t", "resolved", resolved=NOW - 10), c("r", "resolved", updated=NOW, resolved=NOW)],
        Placement("reopen", "t"),
    ),
    (
        "... but not while the contact has an active one: that one takes the message",
        c("t", "resolved", resolved=NOW - 10),
        [c("a", "open")],
        Placement("join", "a"),
    ),
    (
        "a thread key to one resolved before the window: the active one instead",
        c("t", "resolved", resolved=NOW - WINDOW - 10),
        [c("a", "open")],
        Placement("join", "a"),
    ),
    (
        "a thread key to one resolved before the window, nothing active: a new one",
        c("t", "resolved", resolved=NOW - WINDOW - 10),
        [c("t", "resolved", resolved=NOW - WINDOW - 10)],
        Placement("create"),
    ),
    (
        "a thread key to a closed conversation is ignored",
        c("t", "closed"),
        [c("t", "closed"), c("r", "resolved", resolved=NOW - 5)],
        Placement("reopen", "r"),
    ),
    (
        "a resolved one without a resolution stamp counts as long ago",
        None,
        [c("a", "resolved", resolved=None)],
        Placement("create"),
    ),
]


@pytest.mark.parametrize(
    ("situation", "thread_hit", "conversations", "expected"), CASES, ids=[r[0] for r in CASES]
)
def test_placement(
    situation: str,
    thread_hit: Candidate | None,
    conversations: list[Candidate],
    expected: Placement,
) -> None:
    assert place(thread_hit, conversations, NOW, WINDOW) == expected
