"""The incremental planner: the same assignments as the explaining `plan`, cheaper reasons."""

import random

import pytest

from router import (
    PRIORITY_RANK,
    AgentSnapshot,
    ConversationSnapshot,
    Planner,
    QueueConfig,
    Strategy,
    plan,
    plan_assignments,
)
from tests.router.snapshots import NOW, agent, conv

STRATEGIES: list[Strategy] = ["round_robin", "least_busy", "longest_idle", "skills"]


def scenario(
    seed: int,
) -> tuple[list[ConversationSnapshot], dict[str, QueueConfig], list[AgentSnapshot], dict[str, str]]:
    rng = random.Random(seed)
    queues = {f"q{i}": QueueConfig(name=f"q{i}", strategy=s) for i, s in enumerate(STRATEGIES)}
    names = [*queues, "gone"]  # an agent may list a queue the config no longer has
    agents = [
        agent(
            f"a{i:02d}",
            presence=rng.choice(["online", "online", "online", "away", "offline"]),
            queues=tuple(rng.sample(names, rng.randint(1, 3))),
            skills={s: rng.randint(1, 10) for s in rng.sample(["billing", "de", "tech"], 2)},
            capacity=rng.randint(0, 4),
            load=rng.randint(0, 2),
            last=rng.choice([None, float(rng.randint(0, 50)), 7.0]),
        )
        for i in range(rng.randint(0, 30))
    ]
    waiting = [
        conv(
            f"c{i:03d}",
            queue=rng.choice([*queues, "nope"]),
            priority=rng.choice(list(PRIORITY_RANK)),
            skills=rng.choice([{}, {}, {"billing": rng.randint(1, 9)}, {"de": 3, "tech": 2}]),
            created=float(rng.randint(0, 20)),
        )
        for i in range(rng.randint(0, 120))
    ]
    rr_last = {q: f"a{rng.randint(0, 30):02d}" for q in queues if rng.random() < 0.5}
    return waiting, queues, agents, rr_last


@pytest.mark.parametrize("seed", range(200))
def test_same_assignments_as_plan(seed: int) -> None:
    waiting, queues, agents, rr_last = scenario(seed)
    reference = [
        (d.conversation_id, d.agent_id, d.strategy, d.reasons[-1])
        for d in plan(waiting, queues, agents, rr_last, NOW)
        if d.agent_id is not None
    ]
    fast = [
        (d.conversation_id, d.agent_id, d.strategy, d.reasons[-1])
        for d in plan_assignments(waiting, queues, agents, rr_last, NOW)
    ]
    assert fast == reference


def test_reasons_name_the_chosen_agent_and_count_the_others() -> None:
    billing = {"billing": 5}
    agents = [
        agent("alice", load=1, skills=billing),
        agent("bob", presence="offline", skills=billing),
        agent("carol", capacity=2, load=2, skills=billing),
        agent("dave", skills={"billing": 3}),
        agent("erin", presence="away", skills=billing),
        agent("frank", queues=("other",), skills=billing),
    ]
    queues = {"q": QueueConfig(name="q", strategy="round_robin")}
    [decision] = plan_assignments([conv("c1", skills=billing)], queues, agents, {}, NOW)
    assert decision.agent_id == "alice"
    assert decision.reasons == [
        "4 of 5 agents of the queue excluded: 2 offline or away, 1 at capacity, 1 lacking skills",
        "alice chosen by round_robin; load 1/3",
    ]
    # Everyone eligible: only the choice.
    [decision] = plan_assignments([conv("c2")], queues, [agent("a")], {}, NOW)
    assert decision.reasons == ["a chosen by round_robin; load 0/3"]


def test_capacity_used_in_a_pass_counts_in_later_reasons_and_decisions() -> None:
    queues = {"q": QueueConfig(name="q", strategy="least_busy")}
    planner = Planner(queues, [agent("a", capacity=1), agent("b", capacity=2)], {}, NOW)
    first = planner.assign(conv("c1"))
    second = planner.assign(conv("c2"))
    third = planner.assign(conv("c3"))
    assert [d.agent_id if d else None for d in (first, second, third)] == ["a", "b", "b"]
    assert third is not None
    assert third.reasons[0] == "1 of 2 agents of the queue excluded: 1 at capacity"
    assert planner.assign(conv("c4")) is None
    assert not planner.has_free("q")
    assert planner.free_queues() == set()


def test_no_free_agent_means_nothing_to_plan() -> None:
    queues = {"q": QueueConfig(name="q"), "r": QueueConfig(name="r")}
    agents = [
        agent("a", load=3),
        agent("b", presence="away", queues=("r",)),
        agent("c", queues=("q", "r"), capacity=1),
    ]
    planner = Planner(queues, agents, {}, NOW)
    assert planner.free_queues() == {"q", "r"}
    assert planner.assign(conv("c1", queue="r")) is not None
    assert planner.free_queues() == set()


def test_a_group_without_candidates_is_skipped_for_the_rest_of_the_pass() -> None:
    queues = {"q": QueueConfig(name="q", strategy="skills")}
    agents = [agent("a", skills={"de": 2}, capacity=100)]
    waiting = [conv(f"x{i}", skills={"de": 5}, created=float(i)) for i in range(50)]
    waiting.append(conv("ok", skills={"de": 1}, created=99.0))
    decisions = plan_assignments(waiting, queues, agents, {}, NOW)
    assert [(d.conversation_id, d.agent_id) for d in decisions] == [("ok", "a")]


def test_can_take_says_whether_a_free_agent_has_the_skills() -> None:
    queues = {"q": QueueConfig(name="q", strategy="least_busy")}
    agents = [agent("a", skills={"de": 4, "tech": 2}), agent("b", skills={"fr": 9}, load=3)]
    planner = Planner(queues, agents, {}, NOW)
    assert planner.can_take("q", {})
    assert planner.can_take("q", {"de": 4}) and not planner.can_take("q", {"de": 5})
    assert planner.can_take("q", {"de": 1, "tech": 2})
    assert not planner.can_take("q", {"de": 1, "tech": 3})
    assert not planner.can_take("q", {"fr": 1})  # b has it but is full
    assert not planner.can_take("nope", {})
