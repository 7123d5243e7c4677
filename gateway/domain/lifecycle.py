"""The status state machine of a conversation, and its time stamps.

Statuses: `open` (waiting for an agent), `assigned` (an agent has it), `pending` (an agent
answered; the customer's turn), `resolved`, `closed`. `assigned` and `pending` occupy the
assignee's capacity (`gateway.domain.load`).

    open ──claim/assign──▶ assigned ──agent reply──▶ pending ──customer──▶ assigned
      ▲                       │                                  (open if nobody has it)
      └──────transfer─────────┘
    any active ──resolve──▶ resolved ──reopen / customer within the window──▶ open

Each transition is a function from the state before to the state after; a transition that
is not allowed raises `TransitionRefused` with the message the caller shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ENDED = ("resolved", "closed")


class TransitionRefused(Exception):
    """The conversation's status does not allow this change."""


@dataclass(frozen=True, slots=True)
class State:
    status: str
    assignee: str | None = None
    assigned_at: float | None = None
    resolved_at: float | None = None
    first_response_at: float | None = None


def inbound(state: State) -> tuple[State, bool]:
    """A customer's message arrives in the conversation (`gateway.domain.threading` chose
    it). Returns the new state and whether the message reopened it."""
    if state.status == "resolved":
        return replace(state, status="open", assignee=None, resolved_at=None), True
    if state.status == "pending":
        return replace(state, status="assigned" if state.assignee else "open"), False
    return state, False


def claimable(state: State) -> bool:
    """The router may take it: open and nobody's."""
    return state.status == "open" and state.assignee is None


def claim(state: State, agent: str, now: float) -> State:
    if not claimable(state):
        raise TransitionRefused(f"the conversation is {state.status}, not waiting")
    return replace(state, status="assigned", assignee=agent, assigned_at=now)


def assign(state: State, agent: str, now: float) -> State:
    """Manual assignment: to anyone, from any active status (a pending one stays pending)."""
    if state.status in ENDED:
        raise TransitionRefused(f"the conversation is {state.status}; reopen it first")
    status = "assigned" if state.status == "open" else state.status
    return replace(state, status=status, assignee=agent, assigned_at=now)


def transfer(state: State) -> State:
    """To another queue: it waits there for an agent again."""
    if state.status in ENDED:
        raise TransitionRefused(f"the conversation is {state.status}; reopen it first")
    return replace(state, status="open", assignee=None, assigned_at=None)


def resolve(state: State, now: float) -> State:
    """The assignee stays (who resolved it is in the event)."""
    if state.status in ENDED:
        raise TransitionRefused(f"the conversation is already {state.status}")
    return replace(state, status="resolved", resolved_at=now)


def reopen(state: State) -> State:
    if state.status not in ENDED:
        raise TransitionRefused(f"the conversation is {state.status}, not resolved")
    return replace(state, status="open", assignee=None, resolved_at=None, assigned_at=None)


def reply(state: State, sender_type: str, now: float) -> State:
    """A reply is queued. An agent's first one stamps the first response; an agent's reply
    to an assigned conversation makes it pending (the customer's turn). Automatic
    messages and system notices change nothing."""
    if sender_type != "agent":
        return state
    first = state.first_response_at if state.first_response_at is not None else now
    status = "pending" if state.status == "assigned" else state.status
    return replace(state, status=status, first_response_at=first)
