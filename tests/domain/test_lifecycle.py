"""The status state machine: one row per (state, transition) → state after or refusal."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.domain import lifecycle
from gateway.domain.lifecycle import State, TransitionRefused

NOW = 5000.0
S = State

Transition = Callable[[State], State]

CASES: list[tuple[str, State, Transition, State | str]] = [
    # manual assignment
    ("assign an open one", S("open"), lambda s: lifecycle.assign(s, "al", NOW),
     S("assigned", "al", NOW)),
    ("reassign an assigned one", S("assigned", "bo", 1.0), lambda s: lifecycle.assign(s, "al", NOW),
     S("assigned", "al", NOW)),
    ("assign a pending one: it stays pending", S("pending", "bo", 1.0),
     lambda s: lifecycle.assign(s, "al", NOW), S("pending", "al", NOW)),
    ("assign a resolved one", S("resolved", "bo", 1.0, 2.0),
     lambda s: lifecycle.assign(s, "al", NOW), "the conversation is resolved; reopen it first"),
    ("assign a closed one", S("closed"), lambda s: lifecycle.assign(s, "al", NOW),
     "the conversation is closed; reopen it first"),
    # router claims
    ("claim an open one", S("open"), lambda s: lifecycle.claim(s, "al", NOW),
     S("assigned", "al", NOW)),
    ("claim an assigned one", S("assigned", "bo", 1.0), lambda s: lifecycle.claim(s, "al", NOW),
     "the conversation is assigned, not waiting"),
    ("claim a resolved one", S("resolved", None, None, 2.0),
     lambda s: lifecycle.claim(s, "al", NOW), "the conversation is resolved, not waiting"),
    # transfer
    ("transfer an assigned one: it waits again", S("assigned", "al", 1.0),
     lifecycle.transfer, S("open")),
    ("transfer a pending one", S("pending", "al", 1.0, None, 3.0), lifecycle.transfer,
     S("open", None, None, None, 3.0)),
    ("transfer a resolved one", S("resolved", "al", 1.0, 2.0), lifecycle.transfer,
     "the conversation is resolved; reopen it first"),
    # resolve
    ("resolve an assigned one: the assignee stays", S("assigned", "al", 1.0),
     lambda s: lifecycle.resolve(s, NOW), S("resolved", "al", 1.0, NOW)),
    ("resolve an open one", S("open"), lambda s: lifecycle.resolve(s, NOW),
     S("resolved", None, None, NOW)),
    ("resolve a resolved one", S("resolved", None, None, 2.0),
     lambda s: lifecycle.resolve(s, NOW), "the conversation is already resolved"),
    ("resolve a closed one", S("closed"), lambda s: lifecycle.resolve(s, NOW),
     "the conversation is already closed"),
    # reopen
    ("reopen a resolved one: nobody has it", S("resolved", "al", 1.0, 2.0, 1.5),
     lifecycle.reopen, S("open", None, None, None, 1.5)),
    ("reopen a closed one", S("closed", "al", 1.0), lifecycle.reopen, S("open")),
    ("reopen an open one", S("open"), lifecycle.reopen,
     "the conversation is open, not resolved"),
    ("reopen a pending one", S("pending", "al"), lifecycle.reopen,
     "the conversation is pending, not resolved"),
    # replies
    ("an agent's first reply stamps the first response and makes it pending",
     S("assigned", "al", 1.0), lambda s: lifecycle.reply(s, "agent", NOW),
     S("pending", "al", 1.0, None, NOW)),
    ("a later reply keeps the first stamp", S("assigned", "al", 1.0, None, 7.0),
     lambda s: lifecycle.reply(s, "agent", NOW), S("pending", "al", 1.0, None, 7.0)),
    ("an agent's reply to an open one stamps it but leaves it waiting", S("open"),
     lambda s: lifecycle.reply(s, "agent", NOW), S("open", None, None, None, NOW)),
    ("an automatic message changes nothing", S("assigned", "al", 1.0),
     lambda s: lifecycle.reply(s, "system", NOW), S("assigned", "al", 1.0)),
    ("a reply to a resolved one does not reopen it", S("resolved", "al", 1.0, 2.0),
     lambda s: lifecycle.reply(s, "agent", NOW), S("resolved", "al", 1.0, 2.0, NOW)),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "before", "move", "after"), CASES, ids=[r[0] for r in CASES])
def test_transition(situation: str, before: State, move: Transition, after: State | str) -> None:
    if isinstance(after, str):
        with pytest.raises(TransitionRefused) as refused:
            move(before)
        assert str(refused.value) == after
    else:
        assert move(before) == after


INBOUND: list[tuple[str, State, State, bool]] = [
    ("open stays open", S("open"), S("open"), False),
    ("assigned stays assigned", S("assigned", "al", 1.0), S("assigned", "al", 1.0), False),
    ("pending goes back to its assignee", S("pending", "al", 1.0), S("assigned", "al", 1.0), False),
    ("pending without an assignee waits", S("pending"), S("open"), False),
    ("resolved is reopened for the queue", S("resolved", "al", 1.0, 2.0, 1.5),
     S("open", None, 1.0, None, 1.5), True),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "before", "after", "reopened"), INBOUND,
                         ids=[r[0] for r in INBOUND])  # fmt: skip
def test_a_customer_message(situation: str, before: State, after: State, reopened: bool) -> None:
    assert lifecycle.inbound(before) == (after, reopened)
