"""`switchboard route`: the routing explanation as text people read (issue 12)."""

from __future__ import annotations

from typing import Any

from router import Explanation
from router.policies import format_duration


def render(explanation: dict[str, Any], now: float | None = None) -> str:
    """The dict `Gateway.explain`/`switchboard route --json` gives, as lines of text."""
    cls = explanation["classification"]
    lines: list[str] = []
    matches = cls.get("matches") or []
    if matches:
        lines.append("Rules that matched (top to bottom):")
        for m in matches:
            sets = ", ".join(f"{k}={_value(v)}" for k, v in m["set"].items()) or "nothing"
            cont = "  [continue: later rules may add]" if m["continue"] else ""
            lines.append(f"  - {m['rule']}: {m['why']} → sets {sets}{cont}")
    else:
        lines.append("No rule matched: the routing default applies.")
    skills = ", ".join(f"{k}>={v}" for k, v in cls["required_skills"].items()) or "none"
    lines.append(
        f"Result: queue {cls['queue']}, priority {cls['priority']}, skills {skills}, "
        f"tags {', '.join(cls['tags']) or 'none'}"
    )
    for reason in cls["reasons"]:
        if "from default" in reason or "ignored" in reason:
            lines.append(f"  ({reason})")
    esc = cls.get("escalation") or {}
    if esc.get("steps"):
        source = esc["rule"] or "routing.escalation"
        lines.append(f"Escalation ({source}): step {esc['step']} of {esc['of']}")
        for step in esc["steps"]:
            mark = "x" if step["done"] else " "
            lines.append(f"  [{mark}] after {step['after']}: {step['does']}")
        lines.append(
            "  after the last step: "
            + (
                "it stays waiting as the last step left it"
                if esc["after_last"] == "stay"
                else "it stays, and conversation.escalation_exhausted is published"
            )
        )
        if esc.get("next_at") is not None and now is not None:
            lines.append(f"  next step in {format_duration(esc['next_at'] - now)}")
    else:
        lines.append("Escalation: none (it waits in its queue until an agent is free)")
    lines.append("Candidates:")
    for c in explanation.get("candidates", []):
        if c["eligible"]:
            lines.append(f"  + {c['agent']}: {c['score']}")
        else:
            lines.append(f"  - {c['agent']}: excluded ({', '.join(c['excluded'])})")
    if not explanation.get("candidates"):
        lines.append("  (no agent serves this queue)")
    decision = explanation.get("decision")
    if decision is None or decision.get("agent") is None:
        lines.append("Decision: it waits (no eligible agent)")
    else:
        lines.append(f"Decision: {decision['agent']} ({decision['reasons'][-1]})")
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}>={v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def to_dict(out: Explanation) -> dict[str, Any]:
    """An `router.Explanation` as the API and `switchboard route --json` give it."""
    cls, decision = out.classification, out.decision
    return {
        "classification": {
            "queue": cls.queue,
            "priority": cls.priority,
            "required_skills": cls.required_skills,
            "tags": cls.tags,
            "rule": cls.rule,
            "reasons": cls.reasons,
            "rules": cls.rules,
            "matches": [
                {"rule": m.rule, "why": m.why, "set": m.set, "continue": m.continued}
                for m in cls.matches
            ],
            "escalation": out.escalation,
        },
        "candidates": out.candidates,
        "decision": None
        if decision is None
        else {
            "agent": decision.agent_id,
            "strategy": decision.strategy,
            "reasons": decision.reasons,
        },
    }
