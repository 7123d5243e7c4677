"""Pure rules of the agent workspace's actions (issue 14): snooze and wake, tags.

A snoozed conversation is `pending` (the customer's turn, not routed) with a snooze end
kept beside it. It wakes when the time comes, when the customer writes (the inbound rule
of gateway/domain/lifecycle.py already makes it `assigned` or `open` again; the snooze no
longer counts), or by hand: back to `assigned` when someone has it, else `open`, where
routing takes it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.domain.lifecycle import ENDED, State, TransitionRefused

TAG = re.compile(r"^[^\s,]{1,64}$")
MAX_TAGS = 50


def snooze(state: State, until: float, now: float) -> State:
    if state.status in ENDED:
        raise TransitionRefused(f"the conversation is {state.status}; reopen it first")
    if until <= now:
        raise TransitionRefused("a snooze ends in the future")
    return replace(state, status="pending")


def wake(state: State) -> State:
    """The snooze ends: back to whoever has it, or to routing."""
    if state.status != "pending":
        return state
    return replace(state, status="assigned" if state.assignee else "open")


def valid_tag(tag: str) -> bool:
    return bool(TAG.match(tag))


def retag(
    tags: list[str], add: list[str], remove: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """The tags after adding and removing (order kept, no duplicates): the new list, what
    was really added, what was really removed."""
    gone = set(remove)
    kept = [t for t in tags if t not in gone]
    removed = [t for t in tags if t in gone]
    added: list[str] = []
    for tag in add:
        if tag not in kept:
            kept.append(tag)
            added.append(tag)
    if len(kept) > MAX_TAGS:
        raise TransitionRefused(f"a conversation has at most {MAX_TAGS} tags")
    return kept, added, removed
