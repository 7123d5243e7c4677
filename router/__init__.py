"""Routing: classify messages by rules, then pick an agent by the queue's strategy.

Pure decisions only: no I/O, no imports from `gateway` or `connectors`.
"""

from .config import (
    PRIORITY_RANK,
    Action,
    Condition,
    DefaultAction,
    Priority,
    QueueConfig,
    RoutingConfig,
    Rule,
    Strategy,
    TextMatch,
)
from .explain import Explanation, explain
from .handoff import Handoff, route_handoff
from .planner import Planner, plan_assignments
from .rules import Classification, MessageFacts, classify, explain_condition
from .strategies import (
    AgentSnapshot,
    ConversationSnapshot,
    Decision,
    Presence,
    decide,
    order_waiting,
    plan,
)

__all__ = [
    "PRIORITY_RANK",
    "Action",
    "AgentSnapshot",
    "Classification",
    "Condition",
    "ConversationSnapshot",
    "Decision",
    "DefaultAction",
    "Explanation",
    "Handoff",
    "MessageFacts",
    "Planner",
    "Presence",
    "Priority",
    "QueueConfig",
    "RoutingConfig",
    "Rule",
    "Strategy",
    "TextMatch",
    "classify",
    "decide",
    "explain",
    "explain_condition",
    "order_waiting",
    "plan",
    "plan_assignments",
    "route_handoff",
]
