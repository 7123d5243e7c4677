"""`switchboard route`: the routing explanation as text people read (issue 12)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.clock import iso
from router import Explanation
from router.config import RoutingConfig
from router.policies import format_duration
from router.reasons import localize
from router.schedule import time_facts


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
    lines.extend(_time_lines(explanation.get("time"), now))
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


def _time_lines(facts: dict[str, Any] | None, now: float | None) -> list[str]:
    """Hours and SLA due times (router.schedule.time_facts) as lines."""
    if not facts:
        return []

    def when(at: float | None) -> str:
        if at is None:
            return "not counted yet"
        rel = f" (in {format_duration(at - now)})" if now is not None and at > now else ""
        return f"{iso(at)}{rel}"

    hours = facts["hours"]
    out: list[str] = []
    if hours["calendar"] is None:
        out.append("Hours: always open (no calendar)")
    elif hours["open"]:
        closes = f", closes {when(hours['closes_at'])}" if hours["closes_at"] else ""
        out.append(f"Hours ({hours['calendar']}): open now{closes}")
    else:
        opens = when(hours["opens_at"]) if hours["opens_at"] else "never (check the calendar)"
        out.append(f"Hours ({hours['calendar']}): closed now, opens {opens}")
    if hours["placement"]:
        out.append(f"  {hours['placement']}")
    sla = facts["sla"]
    if sla is None:
        out.append("SLA: none applies")
    else:
        out.append(f"SLA ({sla['policy']}):")
        for target, due in sla["due"].items():
            out.append(f"  {target.replace('_', ' ')} due {when(due)}")
    return out


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}>={v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def to_dict(
    out: Explanation,
    routing: RoutingConfig | None = None,
    attributes: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An `router.Explanation` as the API and `switchboard route --json` give it; with
    `routing` and `now`, also what time means for it (hours, SLA due times)."""
    cls, decision = out.classification, out.decision
    time_part = (
        None
        if routing is None or now is None
        else time_facts(routing, cls.queue, cls.priority, attributes or {}, now)
    )
    return {
        "time": time_part,
        "classification": {
            "queue": cls.queue,
            "priority": cls.priority,
            "required_skills": cls.required_skills,
            "tags": cls.tags,
            "rule": cls.rule,
            "reasons": cls.reasons,
            "reasons_localized": localize(cls.reasons),
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
            "reasons_localized": localize(decision.reasons),
        },
    }
