"""Properties of the allocation (docs/budgets.md §4) over random refresh sequences,
and the differential test: the embedded store and the Lua script in a real Redis
make the same allocations from the same inputs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.controlplane.budgets import Allocation, BudgetRequest, Usage
from fusebox.controlplane.budgets.allocation import AllocationParams, Holding, refresh_rows
from fusebox.controlplane.budgets.embedded import EmbeddedBudgetStore
from fusebox.controlplane.budgets.redis import RedisBudgetStore
from tests.controlplane.breakers.breaker_cases import START
from tests.controlplane.budgets.budget_cases import KEY, POLICY, ManualClock
from tests.support.redis_server import RedisServer

RATE = 100.0
INSTANCES = ("a", "b", "c", "d", "e")
PARAMS = AllocationParams(lease=1.0, hysteresis=0.0)
P = 0.25


@dataclass(frozen=True)
class Step:
    advance: float
    holders: frozenset[str]
    demand: dict[str, float]  # calls since the last step
    acks: frozenset[str]  # instances that ack their latest grant
    stale_acks: frozenset[str]  # instances that ack an older generation


steps = st.lists(st.builds(
    Step,
    advance=st.sampled_from([0.0, 0.05, P, 0.6, 1.1]),
    holders=st.frozensets(st.sampled_from(INSTANCES)),
    demand=st.dictionaries(st.sampled_from(INSTANCES),
                           st.floats(0.0, 200.0, allow_nan=False)),
    acks=st.frozensets(st.sampled_from(INSTANCES)),
    stale_acks=st.frozensets(st.sampled_from(INSTANCES)),
), min_size=1, max_size=25)


def held_total(rows: dict[str, Holding]) -> float:
    return sum(row.held for row in rows.values())


def run(sequence: list[Step]) -> list[tuple[dict[str, Holding], float]]:
    """Drive ``refresh_rows`` through ``sequence``; the rows after each step and when."""
    rows: dict[str, Holding] = {}
    now, generation, previous = START, 0, frozenset[str]()
    seen = []
    for step in sequence:
        now += step.advance
        acks = {i: rows[i].generation for i in step.acks if i in rows}
        acks |= {i: max(1, rows[i].acked) for i in step.stale_acks if i in rows and i not in acks}
        generation = refresh_rows(
            rows, rate=RATE, holders=step.holders,
            usage={i: d for i, d in step.demand.items() if i in step.holders},
            acks=acks, departed=previous - step.holders, generation=generation, now=now,
            params=PARAMS,
        ).generation
        previous = step.holders
        seen.append(({i: Holding(**{f: getattr(r, f) for f in Holding.__slots__})
                      for i, r in rows.items()}, now))
    return seen


@given(steps)
@settings(max_examples=300, deadline=None)
def test_what_instances_may_enforce_never_sums_above_the_budget(sequence: list[Step]) -> None:
    for rows, _ in run(sequence):
        assert held_total(rows) <= 1.0 + 1e-9
        for row in rows.values():
            assert 0.0 <= row.granted <= row.held + 1e-12


@given(st.integers(1, 4), st.floats(50.0, 500.0), st.integers(2, 10))
@settings(max_examples=100, deadline=None)
def test_an_idle_instance_never_holds_more_than_the_minimum_while_others_are_starved(
    busy: int, demand: float, rounds: int,
) -> None:
    names = [f"busy{i}" for i in range(busy)]
    holders = frozenset([*names, "idle"])
    minimum = PARAMS.min_share / len(holders)
    rows: dict[str, Holding] = {}
    now, generation = START, 0
    for _ in range(rounds + 8):  # idle long enough for its first demand to be forgotten
        now += P
        acks = {i: r.generation for i, r in rows.items()}
        generation = refresh_rows(
            rows, rate=RATE, holders=holders, usage=dict.fromkeys(names, demand * P),
            acks=acks, departed=(), generation=generation, now=now, params=PARAMS,
        ).generation
        if demand * busy > RATE:  # the others are starved
            assert rows["idle"].granted <= minimum + 1e-12
    now += P
    refresh_rows(rows, rate=RATE, holders=holders, usage={}, departed=(),
                 acks={i: r.generation for i, r in rows.items()}, generation=generation,
                 now=now, params=PARAMS)
    if demand * busy > RATE:  # acked: what it may enforce is the minimum too
        assert rows["idle"].held <= minimum + 1e-12


@given(st.floats(0.0, PARAMS.lease - 0.01), st.booleans())
@settings(max_examples=100, deadline=None)
def test_a_departed_share_is_free_within_a_lease_and_a_refresh(offset: float,
                                                                acked: bool) -> None:
    rows: dict[str, Holding] = {}
    now, generation = START, 0
    for _ in range(6):
        now += P
        generation = refresh_rows(
            rows, rate=RATE, holders=("stays", "leaves"), departed=(),
            usage={"stays": 500 * P, "leaves": 500 * P},
            acks={i: r.generation for i, r in rows.items()} if acked else {},
            generation=generation, now=now, params=PARAMS).generation
    left_at = now + offset
    refresh_rows(rows, rate=RATE, holders=("stays",), usage={"stays": 500 * P}, acks={},
                 departed=("leaves",), generation=generation, now=left_at, params=PARAMS)
    # Refreshes every P from then on: by left + L + P, the share is someone else's.
    now = left_at
    while now < left_at + PARAMS.lease + P:
        now += P
        generation = refresh_rows(
            rows, rate=RATE, holders=("stays",), usage={"stays": 500 * P},
            acks={"stays": rows["stays"].generation}, departed=(), generation=generation,
            now=now, params=PARAMS).generation
        if now < left_at + PARAMS.lease:
            assert "leaves" in rows  # it may still enforce its share
    assert "leaves" not in rows
    assert rows["stays"].granted == 1.0


# ---- differential: the embedded store and the Lua script -------------------------


def _request(step: Step, previous: frozenset[str], last: Allocation | None) -> BudgetRequest:
    grants = last.shares if last is not None else {}
    acks = {i: grants[i].generation for i in step.acks if i in grants}
    acks |= {i: 1 for i in step.stale_acks if i in grants and i not in acks}
    usage = {i: Usage(round(d), 0, 0, d) for i, d in step.demand.items() if i in step.holders}
    return BudgetRequest(KEY, POLICY, holders=sorted(step.holders), usage=usage, acks=acks,
                         departed=sorted(previous - step.holders))


@given(steps)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_embedded_store_and_redis_allocate_alike(
    redis_server_for_properties: RedisServer, sequence: list[Step],
) -> None:
    redis_server_for_properties.flushall()

    async def both() -> None:
        clock = ManualClock()
        embedded = EmbeddedBudgetStore(params=PARAMS, clock=clock)
        redis = RedisBudgetStore(redis_server_for_properties.url, params=PARAMS, clock=clock)
        previous, last = frozenset[str](), None
        try:
            for step in sequence:
                clock.advance(step.advance)
                request = _request(step, previous, last)
                [mine] = await embedded.allocate([request])
                [theirs] = await redis.allocate([request])
                assert mine == theirs
                assert await embedded.describe(KEY) == await redis.describe(KEY)
                previous, last = step.holders, mine
        finally:
            await redis.close()

    asyncio.run(both())
