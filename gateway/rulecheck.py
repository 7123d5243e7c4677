"""`switchboard check` warnings about rules that can never be served (issue 12): a rule
or escalation step needing a skill nobody has or a level nobody reaches, and queues no
agent serves, business hours that never open. Warnings, not errors: the config is valid,
but conversations would wait."""

from __future__ import annotations

import time

from gateway.config import GatewayConfig
from router.handoff import handoff_order_problems
from router.hours import HORIZON_DAYS, Calendar, next_open


def warnings(cfg: GatewayConfig, now: float | None = None) -> list[str]:
    routing = cfg.routing
    out: list[str] = []
    served = {q for a in cfg.agents for q in a.queues}
    best: dict[str, int] = {}
    for agent in cfg.agents:
        for skill, level in agent.skills.items():
            best[skill] = max(level, best.get(skill, 0))

    def needs(where: str, skills: dict[str, int]) -> None:
        for skill, level in sorted(skills.items()):
            have = best.get(skill)
            if have is None:
                out.append(f"{where}: needs skill {skill!r}, which no agent has")
            elif have < level:
                out.append(
                    f"{where}: needs {skill}>={level}, but no agent reaches it (best: {have})"
                )

    def queue_served(where: str, queue: str | None) -> None:
        if queue is not None and queue not in served:
            out.append(f"{where}: sends to queue {queue!r}, which no agent serves")

    for q in routing.queues:
        if q.name not in served:
            out.append(f"routing.queues: queue {q.name!r} is served by no agent")
    queue_served("routing.default", routing.default.queue)
    needs("routing.default", dict(routing.default.skills))
    for i, rule in enumerate(routing.rules):
        where = f"routing.rules[{i}] ({rule.name})"
        needs(where, dict(rule.then.skills))
        queue_served(where, rule.then.queue)
        queue = rule.then.queue or routing.default.queue
        for skill, level in rule.then.skills.items():
            in_queue = [a for a in cfg.agents if queue in a.queues]
            if best.get(skill, 0) >= level and not any(
                a.skills.get(skill, 0) >= level for a in in_queue
            ):
                out.append(
                    f"{where}: needs {skill}>={level} in queue {queue!r}, "
                    "but no agent of that queue has it"
                )
        for j, step in enumerate(rule.escalation.steps if rule.escalation else []):
            queue_served(f"{where}.escalation.steps[{j}]", step.queue)
    for i, problem in handoff_order_problems(routing):  # issue 15: the bot's handoff
        out.append(f"routing.rules[{i}] ({routing.rules[i].name}): {problem}")
    at = time.time() if now is None else now
    for name, hours in routing.hours.items():
        if next_open(Calendar.of(hours), at) is None:
            users = [q.name for q in routing.queues if (q.hours or routing.default_hours) == name]
            out.append(
                f"routing.hours.{name}: never opens in the next {HORIZON_DAYS} days"
                f" (queues: {', '.join(users) or 'none'}); conversations there wait until an"
                " agent takes one by hand"
            )
    return out
