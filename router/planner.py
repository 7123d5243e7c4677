"""Incremental routing: a pool of the agents with free capacity, indexed by queue and skill (pure).

`plan` in `strategies` explains every decision against every agent; this module decides
the same assignments at a cost that follows the candidates, not the backlog or the team:

- only agents that are online and under capacity enter the pool, indexed per queue (and
  per skill within the queue); an agent that fills up leaves every queue it serves;
- each strategy has its own index per queue: ids in order for `round_robin`, a heap for
  `least_busy`/`skills` (by load ratio) and for `longest_idle`, so a conversation without
  required skills is decided in O(log agents), one requiring a skill at a level from the
  (at most ten) per-level indexes of that skill; a set of several required skills gets its
  own index the first time a pass meets it, built from the free agents having the rarest
  of them, so later conversations needing the same set cost O(log agents) too;
- once a queue (or a queue and a set of required skills) has no candidate left, every later
  conversation of that group is skipped in O(1): capacity only shrinks during a pass.

A decision carries the reason for the chosen agent plus counts of the excluded ones; the
per-agent explanation is `strategies.decide` (`router.explain`), computed on demand.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .config import QueueConfig
from .reasons import Reason, join
from .strategies import (
    AgentSnapshot,
    ConversationSnapshot,
    Decision,
    _idle_key,
    _least_busy_key,
    _skill_score,
    chosen_reason,
    order_waiting,
    sticky_reason,
)


def _is_free(agent: AgentSnapshot) -> bool:
    return agent.presence == "online" and agent.load < agent.capacity


class _Index:
    """A set of free agents ordered for one strategy: ids in order (round robin) or a heap
    of keys with lazy deletion (an entry is current when its key is the agent's key)."""

    __slots__ = ("heap", "ids", "key", "members")

    def __init__(self, key: Callable[[AgentSnapshot], tuple[Any, ...]] | None = None) -> None:
        self.members: set[str] = set()
        self.ids: list[str] = []
        self.heap: list[tuple[Any, ...]] = []
        # The order of the heap when it is not the queue's (skills over several skills).
        self.key = key


class _QueuePool:
    """The free agents of one queue, indexed for its strategy, whole and per skill level."""

    __slots__ = (
        "by_level",
        "by_required",
        "by_skill",
        "full",
        "main",
        "max_level",
        "members",
        "strategy",
        "unavailable",
    )

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.members = 0  # every agent of the queue in the snapshot
        self.unavailable = 0  # offline or away
        self.full = 0  # online, at capacity (grows during a pass)
        self.main = _Index()
        # (skill, level) → the free agents with exactly that level: a single required skill
        # at level L is answered from the (at most ten) indexes of levels L..10.
        self.by_level: dict[tuple[str, int], _Index] = {}
        self.by_skill: dict[str, set[str]] = {}
        # Several required skills → the free agents having all of them, built on first use.
        self.by_required: dict[tuple[tuple[str, int], ...], _Index] = {}
        self.max_level = 10  # skill levels are 1-10 in the config; higher ones still count

    @property
    def free(self) -> set[str]:
        return self.main.members

    def key(self, agent: AgentSnapshot) -> tuple[Any, ...]:
        if self.strategy == "longest_idle":
            return (_idle_key(agent), agent.id)
        return _least_busy_key(agent)  # least_busy; skills orders each level by it too

    def _indexes(self, agent: AgentSnapshot) -> list[_Index]:
        out = [self.main]
        for skill, level in agent.skills.items():
            index = self.by_level.get((skill, level))
            if index is None:
                index = self.by_level[(skill, level)] = _Index()
                self.max_level = max(self.max_level, level)
            out.append(index)
        if self.by_required:
            out.extend(i for i in self.by_required.values() if agent.id in i.members)
        return out

    def insert(self, index: _Index, agent: AgentSnapshot) -> None:
        index.members.add(agent.id)
        if self.strategy == "round_robin":
            bisect.insort(index.ids, agent.id)
        else:
            heapq.heappush(index.heap, (index.key or self.key)(agent))

    def add(self, agent: AgentSnapshot) -> None:
        for skill in agent.skills:
            self.by_skill.setdefault(skill, set()).add(agent.id)
        if self.strategy == "round_robin":
            for index in self._indexes(agent):
                index.members.add(agent.id)
                bisect.insort(index.ids, agent.id)
        else:
            key = self.key(agent)
            for index in self._indexes(agent):
                index.members.add(agent.id)
                heapq.heappush(index.heap, key)

    def remove(self, agent: AgentSnapshot) -> None:
        for skill in agent.skills:
            self.by_skill.get(skill, set()).discard(agent.id)
        for index in self._indexes(agent):
            index.members.discard(agent.id)
            if self.strategy == "round_robin":
                i = bisect.bisect_left(index.ids, agent.id)
                if i < len(index.ids) and index.ids[i] == agent.id:
                    del index.ids[i]
            # heap entries of an agent that left are dropped lazily

    def withhold(self, agent: AgentSnapshot) -> list[_Index]:
        """Take a free agent out of this pool for one decision; what `restore` needs."""
        indexes = self._indexes(agent)
        self.remove(agent)
        return indexes

    def restore(self, agent: AgentSnapshot, indexes: list[_Index]) -> None:
        """Put a withheld agent back into the indexes it was in."""
        for skill in agent.skills:
            self.by_skill.setdefault(skill, set()).add(agent.id)
        for index in indexes:
            if agent.id not in index.members:
                self.insert(index, agent)
        # An index of several skills built while the agent was withheld lacks it.
        for signature, index in self.by_required.items():
            if agent.id not in index.members and all(
                agent.skills.get(skill, 0) >= level for skill, level in signature
            ):
                self.insert(index, agent)

    def changed(self, agent: AgentSnapshot) -> None:
        """The agent's load or idle time changed; it is still free."""
        if self.strategy != "round_robin":
            key = self.key(agent)
            for index in self._indexes(agent):
                heapq.heappush(index.heap, key if index.key is None else index.key(agent))

    def head(self, index: _Index, agents: Mapping[str, AgentSnapshot]) -> AgentSnapshot | None:
        """The first agent of a heap index (not round robin), or None when it is empty."""
        heap = index.heap
        while heap:
            entry = heap[0]
            agent = agents.get(entry[-1])
            key = index.key or self.key
            if agent is not None and agent.id in index.members and key(agent) == entry:
                return agent
            heapq.heappop(heap)  # stale: the agent left or its key changed
        return None

    def next_id(self, indexes: list[_Index], cursor: str | None) -> str | None:
        """Round robin over the union of `indexes`: the first id after `cursor`, wrapping."""
        after: str | None = None
        first: str | None = None
        for index in indexes:
            if not index.ids:
                continue
            if first is None or index.ids[0] < first:
                first = index.ids[0]
            if cursor is not None:
                i = bisect.bisect_right(index.ids, cursor)
                if i < len(index.ids) and (after is None or index.ids[i] < after):
                    after = index.ids[i]
        return after if after is not None else first


class Planner:
    """Decide waiting conversations one at a time against a working copy of the agents.

    Every assignment is applied (load + 1, `last_assigned_at = now`, the queue's
    round-robin cursor), so later decisions see it, exactly as `plan` does. The inputs
    are not modified. One planner serves one channel kind (capacity is per kind).
    """

    def __init__(
        self,
        queues: Mapping[str, QueueConfig],
        agents: Iterable[AgentSnapshot],
        rr_last: Mapping[str, str],
        now: float,
    ) -> None:
        self.queues = queues
        self.now = now
        self.cursors = dict(rr_last)
        # (unavailable, full, lacking, members) → the exclusion reason; reasons are
        # immutable, so the many decisions of a pass share them.
        self._exclusions: dict[tuple[int, int, int, int], str] = {}
        self.agents: dict[str, AgentSnapshot] = {}
        self.pools = {name: _QueuePool(q.strategy) for name, q in queues.items()}
        self._dead: set[tuple[str, tuple[tuple[str, int], ...]]] = set()
        for agent in agents:
            free = _is_free(agent)
            if free:
                self.agents[agent.id] = agent
            for name in agent.queues:
                pool = self.pools.get(name)
                if pool is None:
                    continue
                pool.members += 1
                if agent.presence != "online":
                    pool.unavailable += 1
                elif not free:
                    pool.full += 1
                else:
                    pool.add(agent)

    def has_free(self, queue: str) -> bool:
        """Whether some agent of `queue` can still take a conversation."""
        pool = self.pools.get(queue)
        return pool is not None and bool(pool.free)

    def can_take(self, queue: str, required: Mapping[str, int]) -> bool:
        """Whether some free agent of `queue` has every skill in `required` (at its level)."""
        pool = self.pools.get(queue)
        if pool is None or not pool.free:
            return False
        if not required:
            return True
        if (queue, tuple(sorted(required.items()))) in self._dead:
            return False
        if len(required) == 1:
            [(skill, level)] = required.items()
            return any(
                (index := pool.by_level.get((skill, lv))) is not None and index.members
                for lv in range(level, pool.max_level + 1)
            )
        return bool(self._required_index(pool, required).members)

    def free_queues(self) -> set[str]:
        """The queues with at least one agent under capacity."""
        return {name for name, pool in self.pools.items() if pool.free}

    def assign(self, conv: ConversationSnapshot) -> Decision | None:
        """The agent `conv` gets, applied to the working state; None when it waits.

        Its sticky agent first, when free, in the queue, with the skills and not excluded;
        agents it excludes are withheld from the queue's indexes while it is decided."""
        pool = self.pools.get(conv.queue)
        if pool is None or not pool.free:
            return None
        required = conv.required_skills
        if conv.sticky is not None and conv.sticky not in conv.exclude:
            agent = self.agents.get(conv.sticky)
            if (
                agent is not None
                and conv.queue in agent.queues
                and all(agent.skills.get(s, 0) >= lv for s, lv in required.items())
            ):
                self._apply(agent, conv.queue)
                return Decision(conv.id, agent.id, conv.queue, "sticky", [sticky_reason(agent)])
        withheld = [
            (agent, pool.withhold(agent))
            for agent_id in conv.exclude
            if agent_id in pool.free and (agent := self.agents.get(agent_id)) is not None
        ]
        if not withheld:
            return self._assign(conv, pool, required)
        try:
            if not pool.free:
                return None
            return self._assign(conv, pool, required, mark_dead=False)
        finally:
            for agent, indexes in withheld:
                current = self.agents.get(agent.id)
                if current is not None:  # still free (it was not the one chosen)
                    pool.restore(current, indexes)

    def _assign(
        self,
        conv: ConversationSnapshot,
        pool: _QueuePool,
        required: Mapping[str, int],
        mark_dead: bool = True,
    ) -> Decision | None:
        group = (conv.queue, tuple(sorted(required.items())))
        if required and group in self._dead:
            return None
        cursor = self.cursors.get(conv.queue)
        if len(required) == 1:
            [(skill, level)] = required.items()
            picked = self._one_skill(pool, skill, level, cursor)
            if picked is None:
                if mark_dead:
                    self._dead.add(group)
                return None
            chosen, eligible = picked
        elif required:
            index = self._required_index(pool, required)
            if not index.members:
                if mark_dead:
                    self._dead.add(group)
                return None
            eligible = len(index.members)
            if pool.strategy == "round_robin":
                agent_id = pool.next_id([index], cursor)
                assert agent_id is not None
                chosen = self.agents[agent_id]
            else:
                head = pool.head(index, self.agents)
                assert head is not None
                chosen = head
        else:
            eligible = len(pool.free)
            chosen = self._top(pool, cursor)
        reasons = []
        lacking = len(pool.free) - eligible
        counts = (pool.unavailable, pool.full, lacking, pool.members)
        excluded = self._exclusions.get(counts)
        if excluded is None:
            excluded = self._exclusions[counts] = self._excluded(pool, lacking)
        if excluded:
            reasons.append(excluded)
        reasons.append(chosen_reason(chosen, pool.strategy, cursor, required, self.now))
        self._apply(chosen, conv.queue)
        return Decision(conv.id, chosen.id, conv.queue, pool.strategy, reasons)

    def _required_index(self, pool: _QueuePool, required: Mapping[str, int]) -> _Index:
        """The free agents of `pool` having every skill of `required`, in the queue's order
        (for `skills`: the sum of those skills' levels, then least busy); built once per
        pass from the agents having the rarest of them, then kept up to date."""
        signature = tuple(sorted(required.items()))
        index = pool.by_required.get(signature)
        if index is None:
            key = None
            if pool.strategy == "skills":
                wanted = dict(required)

                def key(agent: AgentSnapshot) -> tuple[Any, ...]:
                    return (-_skill_score(agent, wanted), *_least_busy_key(agent))

            index = pool.by_required[signature] = _Index(key)
            for agent in self._with_skills(pool, required):
                pool.insert(index, agent)
        return index

    def _with_skills(self, pool: _QueuePool, required: Mapping[str, int]) -> list[AgentSnapshot]:
        sets = []
        for skill in required:
            having = pool.by_skill.get(skill)
            if not having:
                return []
            sets.append(having)
        rarest = min(sets, key=len)
        out = []
        for agent_id in rarest:
            agent = self.agents[agent_id]
            if all(agent.skills.get(s, 0) >= level for s, level in required.items()):
                out.append(agent)
        return out

    def _top(self, pool: _QueuePool, cursor: str | None) -> AgentSnapshot:
        if pool.strategy == "round_robin":
            agent_id = pool.next_id([pool.main], cursor)
            assert agent_id is not None  # the pool has a free agent
            return self.agents[agent_id]
        agent = pool.head(pool.main, self.agents)
        assert agent is not None
        return agent

    def _one_skill(
        self, pool: _QueuePool, skill: str, level: int, cursor: str | None
    ) -> tuple[AgentSnapshot, int] | None:
        """The pick among the free agents with `skill` >= `level`, and how many there are."""
        indexes = [
            index
            for lv in range(level, pool.max_level + 1)
            if (index := pool.by_level.get((skill, lv))) is not None and index.members
        ]
        if not indexes:
            return None
        eligible = sum(len(index.members) for index in indexes)
        if pool.strategy == "round_robin":
            agent_id = pool.next_id(indexes, cursor)
            assert agent_id is not None
            return self.agents[agent_id], eligible
        if pool.strategy == "skills":
            # The score is the one skill's level: the highest level wins, then least busy.
            for index in reversed(indexes):
                head = pool.head(index, self.agents)
                if head is not None:
                    return head, eligible
            return None
        heads = [h for index in indexes if (h := pool.head(index, self.agents)) is not None]
        if not heads:
            return None
        return min(heads, key=pool.key), eligible

    @staticmethod
    def _excluded(pool: _QueuePool, lacking: int) -> str:
        parts = []
        if pool.unavailable:
            parts.append(Reason("pool.unavailable", count=pool.unavailable))
        if pool.full:
            parts.append(Reason("pool.full", count=pool.full))
        if lacking:
            parts.append(Reason("pool.lacking", count=lacking))
        if not parts:
            return ""
        total = pool.unavailable + pool.full + lacking
        return Reason(
            "pool.excluded", total=total, members=pool.members, parts=join("comma", parts)
        )

    def _apply(self, chosen: AgentSnapshot, queue: str) -> None:
        agent = dataclasses.replace(chosen, load=chosen.load + 1, last_assigned_at=self.now)
        self.cursors[queue] = agent.id
        full = not _is_free(agent)
        if full:
            del self.agents[agent.id]
        else:
            self.agents[agent.id] = agent
        for name in agent.queues:
            pool = self.pools.get(name)
            if pool is None:
                continue
            if full:
                pool.remove(agent)
                pool.full += 1
            else:
                pool.changed(agent)


def plan_assignments(
    waiting: Iterable[ConversationSnapshot],
    queues: Mapping[str, QueueConfig],
    agents: Iterable[AgentSnapshot],
    rr_last: Mapping[str, str],
    now: float,
    by_sla: bool = False,
    is_open: Callable[[str], bool] | None = None,
) -> list[Decision]:
    """The assignments `plan` would make, in `order_waiting` order, without explaining the
    conversations that wait: only decisions with an agent are returned. `by_sla` orders by
    SLA due time within a priority; `is_open(queue)` False parks a closed queue's ones."""
    planner = Planner(queues, agents, rr_last, now)
    out = []
    open_: dict[str, bool] = {}
    for conv in order_waiting(waiting, by_sla):
        if not planner.has_free(conv.queue):
            continue
        if is_open is not None:
            known = open_.get(conv.queue)
            if known is None:
                known = open_[conv.queue] = is_open(conv.queue)
            if not known:
                continue
        decision = planner.assign(conv)
        if decision is not None:
            out.append(decision)
    return out
