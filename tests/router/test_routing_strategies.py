"""Agent selection: eligibility, each strategy, waiting order and plan()."""

import time

import pytest

from router import (
    AgentSnapshot,
    QueueConfig,
    Strategy,
    decide,
    order_waiting,
    plan,
)
from tests.router.snapshots import NOW, agent, conv


def pick(
    strategy: Strategy,
    agents: list[AgentSnapshot],
    *,
    rr_last: str | None = None,
    skills: dict[str, int] | None = None,
) -> str | None:
    return decide(
        conv(skills=skills), QueueConfig(name="q", strategy=strategy), agents, rr_last, NOW
    ).agent_id


# --- eligibility -------------------------------------------------------------------------


def test_exclusions_each_have_a_reason() -> None:
    billing = {"billing": 5}
    agents = [
        agent("alice", load=1, skills=billing),
        agent("bob", presence="offline", skills=billing),
        agent("carol", capacity=2, load=2, skills=billing),
        agent("dave", skills={"billing": 3}),
        agent("erin", presence="away", skills=billing),
        agent("frank", queues=("other",), skills=billing),
    ]
    decision = decide(
        conv(skills={"billing": 5}),
        QueueConfig(name="q", strategy="round_robin"),
        agents,
        None,
        NOW,
    )
    assert decision.agent_id == "alice"
    assert decision.strategy == "round_robin"
    assert decision.queue == "q"
    assert decision.conversation_id == "c1"
    assert decision.reasons == [
        "bob: offline",
        "carol: at capacity 2/2",
        "dave: lacks skill billing>=5 (has 3)",
        "erin: away",
        "frank: not in queue 'q'",
        "alice chosen by round_robin; load 1/3",
    ]


def test_missing_skill_and_several_problems() -> None:
    decision = decide(
        conv(skills={"billing": 2, "german": 1}),
        QueueConfig(name="q", strategy="least_busy"),
        [agent("zed", presence="offline", capacity=1, load=1, skills={"billing": 1})],
        None,
        NOW,
    )
    assert decision.agent_id is None
    assert decision.reasons == [
        "zed: offline, at capacity 1/1, lacks skill billing>=2 (has 1), lacks skill german>=1",
        "no eligible agent in queue 'q'; conversation waits",
    ]


def test_skill_at_exact_minimum_is_enough() -> None:
    assert pick("round_robin", [agent("a", skills={"x": 5})], skills={"x": 5}) == "a"
    assert pick("round_robin", [agent("a", skills={"x": 4})], skills={"x": 5}) is None


def test_no_agents_at_all_waits() -> None:
    decision = decide(conv(), QueueConfig(name="q"), [], None, NOW)
    assert decision.agent_id is None
    assert decision.reasons == ["no eligible agent in queue 'q'; conversation waits"]


# --- strategies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rr_last", "expected"),
    [
        (None, "a"),  # no cursor: first by id
        ("a", "b"),
        ("b", "d"),  # c is not eligible: skipped
        ("d", "a"),  # wraps around
        ("bb", "d"),  # cursor agent gone: next id after it
        ("zz", "a"),
    ],
)
def test_round_robin_cursor_and_wrap(rr_last: str | None, expected: str) -> None:
    agents = [agent("d"), agent("c", presence="offline"), agent("b"), agent("a")]
    assert pick("round_robin", agents, rr_last=rr_last) == expected


def test_round_robin_single_agent_repeats() -> None:
    assert pick("round_robin", [agent("a")], rr_last="a") == "a"


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        # ratio wins over raw load: 2/10 < 1/2
        ([agent("a", load=1, capacity=2), agent("b", load=2, capacity=10)], "b"),
        # equal ratio (1/2 == 2/4): lower load wins
        ([agent("a", load=2, capacity=4), agent("b", load=1, capacity=2)], "b"),
        # equal ratio and load: longest idle wins, never assigned first
        (
            [
                agent("a", load=1, capacity=2, last=500.0),
                agent("b", load=1, capacity=2, last=100.0),
            ],
            "b",
        ),
        (
            [
                agent("a", load=1, capacity=2, last=100.0),
                agent("b", load=1, capacity=2, last=None),
            ],
            "b",
        ),
        # everything equal: id
        ([agent("b", load=1), agent("a", load=1)], "a"),
    ],
)
def test_least_busy(agents: list[AgentSnapshot], expected: str) -> None:
    assert pick("least_busy", agents) == expected


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ([agent("a", last=300.0), agent("b", last=200.0), agent("c", last=250.0)], "b"),
        ([agent("a", last=1.0), agent("b", last=None)], "b"),
        ([agent("b", last=None), agent("a", last=None)], "a"),
        ([agent("b", last=5.0), agent("a", last=5.0)], "a"),
        # load does not matter for longest_idle
        ([agent("a", load=2, last=1.0), agent("b", load=0, last=2.0)], "a"),
    ],
)
def test_longest_idle(agents: list[AgentSnapshot], expected: str) -> None:
    assert pick("longest_idle", agents) == expected


def test_longest_idle_reason_mentions_idle_time() -> None:
    decision = decide(
        conv(),
        QueueConfig(name="q", strategy="longest_idle"),
        [agent("a", last=NOW - 90)],
        None,
        NOW,
    )
    assert decision.reasons[-1] == "a chosen by longest_idle; load 0/3; last assigned 90s ago"


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        # highest sum of levels on the required skills
        (
            [
                agent("a", skills={"billing": 9, "german": 2}),
                agent("b", skills={"billing": 6, "german": 6}),
            ],
            "b",
        ),
        # skills not required do not count
        (
            [
                agent("a", skills={"billing": 5, "german": 5, "french": 10}),
                agent("b", skills={"billing": 6, "german": 5}),
            ],
            "b",
        ),
        # equal score: least busy
        (
            [
                agent("a", skills={"billing": 7, "german": 3}, load=2),
                agent("b", skills={"billing": 5, "german": 5}, load=1),
            ],
            "b",
        ),
        # higher score beats lower load
        (
            [
                agent("a", skills={"billing": 9, "german": 3}, load=2),
                agent("b", skills={"billing": 5, "german": 5}, load=0),
            ],
            "a",
        ),
    ],
)
def test_skills(agents: list[AgentSnapshot], expected: str) -> None:
    assert pick("skills", agents, skills={"billing": 3, "german": 2}) == expected


def test_skills_reason_has_score() -> None:
    decision = decide(
        conv(skills={"billing": 3}),
        QueueConfig(name="q", strategy="skills"),
        [agent("a", skills={"billing": 8}, load=1)],
        None,
        NOW,
    )
    assert decision.reasons == ["a chosen by skills; skill score 8; load 1/3"]


def test_skills_without_requirements_is_least_busy() -> None:
    assert pick("skills", [agent("a", load=2), agent("b", load=1)]) == "b"


# --- waiting order and plan --------------------------------------------------------------


def test_order_waiting_priority_then_age_then_id() -> None:
    convs = [
        conv("n-old", priority="normal", created=1.0),
        conv("u-new", priority="urgent", created=50.0),
        conv("h-b", priority="high", created=10.0),
        conv("h-a", priority="high", created=10.0),
        conv("l", priority="low", created=0.0),
        conv("h-old", priority="high", created=5.0),
    ]
    assert [c.id for c in order_waiting(convs)] == ["u-new", "h-old", "h-a", "h-b", "n-old", "l"]


def test_plan_respects_simulated_capacity() -> None:
    waiting = [
        conv("low-old", priority="low", created=1.0),
        conv("high-new", priority="high", created=30.0),
        conv("high-old", priority="high", created=20.0),
    ]
    agents = [agent("solo", capacity=2, load=0)]
    decisions = plan(waiting, {"q": QueueConfig(name="q")}, agents, {}, NOW)
    assert [(d.conversation_id, d.agent_id) for d in decisions] == [
        ("high-old", "solo"),
        ("high-new", "solo"),
        ("low-old", None),
    ]
    assert decisions[1].reasons[-1] == "solo chosen by round_robin; load 1/2; previous solo"
    assert "solo: at capacity 2/2" in decisions[2].reasons
    # inputs untouched
    assert agents[0].load == 0


def test_plan_advances_round_robin_cursor_and_idle_time() -> None:
    queues = {
        "rr": QueueConfig(name="rr", strategy="round_robin"),
        "idle": QueueConfig(name="idle", strategy="longest_idle"),
    }
    agents = [agent(x, queues=("rr", "idle"), capacity=10) for x in ("a", "b", "c")]
    waiting = [conv(f"c{i}", queue="rr", created=float(i)) for i in range(4)]
    decisions = plan(waiting, queues, agents, {"rr": "a"}, NOW)
    assert [d.agent_id for d in decisions] == ["b", "c", "a", "b"]

    agents = [agent("a", queues=("idle",), last=1.0), agent("b", queues=("idle",), last=2.0)]
    waiting = [conv(f"c{i}", queue="idle", created=float(i)) for i in range(3)]
    # a (oldest), then b (a was just assigned at NOW), then a again.
    assert [d.agent_id for d in plan(waiting, queues, agents, {}, NOW)] == ["a", "b", "a"]


def test_plan_least_busy_spreads_load() -> None:
    agents = [agent("a", load=1, capacity=4), agent("b", load=0, capacity=4)]
    waiting = [conv(f"c{i}", created=float(i)) for i in range(4)]
    decisions = plan(waiting, {"q": QueueConfig(name="q", strategy="least_busy")}, agents, {}, NOW)
    # b (0/4), then a and b tie on 1/4 with a idle longer (never assigned), then b (1/4 vs 2/4).
    assert [d.agent_id for d in decisions] == ["b", "a", "b", "a"]


def test_plan_unknown_queue_waits_with_reason() -> None:
    decisions = plan([conv("x", queue="nope")], {"q": QueueConfig(name="q")}, [agent("a")], {}, NOW)
    assert len(decisions) == 1
    assert decisions[0].agent_id is None
    assert decisions[0].strategy is None
    assert decisions[0].reasons == ["unknown queue 'nope'; conversation waits"]


def test_plan_is_fast_for_1000_waiting_and_50_agents() -> None:
    strategies: list[Strategy] = ["round_robin", "least_busy", "longest_idle", "skills"]
    queues = {f"q{i}": QueueConfig(name=f"q{i}", strategy=s) for i, s in enumerate(strategies)}
    agents = [
        agent(
            f"agent{i:02d}",
            queues=tuple(queues),
            skills={"billing": 1 + i % 10},
            capacity=15,
            load=i % 5,
            last=float(i) if i % 3 else None,
        )
        for i in range(50)
    ]
    waiting = [
        conv(
            f"c{i:04d}",
            queue=f"q{i % 4}",
            priority=("low", "normal", "high", "urgent")[i % 4],
            skills={"billing": 3} if i % 2 else None,
            created=float(i),
        )
        for i in range(1000)
    ]
    start = time.perf_counter()
    decisions = plan(waiting, queues, agents, {}, NOW)
    elapsed = time.perf_counter() - start
    assert len(decisions) == 1000
    assigned = [d for d in decisions if d.agent_id is not None]
    # Capacity is respected across the whole plan.
    per_agent: dict[str, int] = {}
    for d in assigned:
        assert d.agent_id is not None
        per_agent[d.agent_id] = per_agent.get(d.agent_id, 0) + 1
    for a in agents:
        assert a.load + per_agent.get(a.id, 0) <= a.capacity
    assert len(assigned) > 500
    # Greedy is maximal: nobody left waiting could still be taken by some agent.
    final = {a.id: a.load + per_agent.get(a.id, 0) for a in agents}
    for d, c in zip(decisions, order_waiting(waiting), strict=True):
        assert d.conversation_id == c.id
        if d.agent_id is None:
            assert not any(
                c.queue in a.queues
                and final[a.id] < a.capacity
                and all(a.skills.get(k, 0) >= v for k, v in c.required_skills.items())
                for a in agents
            )
    assert elapsed < 2.0, elapsed
