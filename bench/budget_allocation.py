"""The fleet rate limit's allocation, simulated: ``allocation.refresh_rows`` driven
with ``make bench-budgets``' demands, no processes and no clock (deterministic
for a seed).

50 instances share 500 calls/s: 25 want 36.4/s and 25 want 3.64/s (10:1, twice
the limit in all), each on a periodic schedule with a phase from its index and
a little seeded jitter. Each instance enforces its pushed share with the
agent's own token bucket (``RateLimiter``) and acks a share as soon as it has
it; instances spread over ``replicas`` replicas, each refreshing every ``P``
(staggered) with its own instances' usage and acks, against one shared table
(the store). What it prints, after the first ``warmup`` seconds: the fleet's
admitted calls per second, the mean granted total, each class's mean grant
and demand estimate, and the light half's refusals. It also checks, at every
refresh, that the shares instances may enforce never sum above 1.

    python -m bench.budget_allocation [--replicas 2] [--burst 500] [--seed 1]
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass

from fusebox.agent._rate_limiter import RateLimiter
from fusebox.agent.policy import RateLimitPolicy
from fusebox.controlplane.budgets.allocation import (
    AllocationParams,
    Holding,
    demand_now,
    refresh_rows,
)

__all__ = ["Outcome", "main", "simulate"]

LIMIT = 500
BUSY_RATE, LIGHT_RATE = 36.4, 3.64
#: Seconds between a refresh and its shares reaching the agents (a push on the stream).
PUSH_DELAY = 0.005


@dataclass
class Outcome:
    """What one simulated run shows, over the seconds after the warm-up."""

    admitted_per_second: list[int]
    granted_total: float  # mean of Σ granted at refreshes, calls/s
    busy_grant: float  # mean grant of a busy instance, calls/s
    light_grant: float
    light_grant_lowest: float  # the lowest grant any light instance had, calls/s
    busy_demand: float  # mean demand estimate at refreshes, calls/s
    light_demand: float
    light_refused_per_second: float
    max_held: float = 0.0  # the most Σ held ever reached (share units; must stay <= 1)

    @property
    def worst_deviation(self) -> float:
        """The second furthest from the limit, signed (negative: under)."""
        return max(((a - LIMIT) / LIMIT for a in self.admitted_per_second), key=abs,
                   default=0.0)


@dataclass
class _Instance:
    name: str
    rate: float
    limiter: RateLimiter
    replica: int
    wanted: int = 0  # since its replica's last refresh
    admitted: int = 0
    ack: int = 0  # a generation to ack at the replica's next refresh (0: none)
    sent: int = 0  # the generation of the last share its replica pushed


def _instances(burst: int, replicas: int) -> list[_Instance]:
    policy = RateLimitPolicy("fleet", limit=LIMIT, burst=burst)
    made = []
    for index in range(50):
        rate = BUSY_RATE if index % 2 == 0 else LIGHT_RATE
        made.append(_Instance(f"i{index:02d}", rate, RateLimiter(policy, 1 / 50, 0.0),
                              index % replicas))
    return made


def simulate(*, seconds: float = 12.0, warmup: float = 2.0, replicas: int = 2,
             burst: int = LIMIT, seed: int = 1, period: float = 0.25,
             jitter: float = 0.004, params: AllocationParams | None = None) -> Outcome:
    params = params or AllocationParams()
    rng = random.Random(seed)
    fleet = _instances(burst, replicas)
    by_name = {i.name: i for i in fleet}
    rows: dict[str, Holding] = {}
    generation = 0
    # (t, order, kind, who, share, generation)
    events: list[tuple[float, int, str, str, float, int]] = []
    for index, inst in enumerate(fleet):
        heapq.heappush(events, (index / 50 / inst.rate, 1, "call", inst.name, 0.0, 0))
    for replica in range(replicas):
        heapq.heappush(events, (period * replica / replicas, 0, "refresh", str(replica),
                                0.0, 0))
    admitted = [0] * int(seconds + 1)
    refused_light = 0
    samples: dict[str, list[float]] = {k: [] for k in ("total", "busy", "light", "bd", "ld")}
    lowest, max_held = float("inf"), 0.0
    while events:
        t, _, kind, who, value, granted_as = heapq.heappop(events)
        if t >= seconds:
            break
        if kind == "call":
            inst = by_name[who]
            inst.wanted += 1
            if inst.limiter.reserve(t) is not None:
                inst.admitted += 1
                admitted[int(t)] += 1
            elif inst.rate == LIGHT_RATE and t >= warmup:
                refused_light += 1
            due = t + 1 / inst.rate + rng.uniform(-jitter, jitter)
            heapq.heappush(events, (max(t, due), 1, "call", who, 0.0, 0))
        elif kind == "share":
            inst = by_name[who]
            inst.limiter.set_share(value, t)
            inst.ack = max(inst.ack, granted_as)
        else:  # one replica's refresh: its own instances' usage and acks
            replica = int(who)
            mine = [i for i in fleet if i.replica == replica]
            result = refresh_rows(
                rows, rate=float(LIMIT), holders=[i.name for i in mine],
                usage={i.name: float(i.wanted) for i in mine if i.wanted},
                acks={i.name: i.ack for i in mine if i.ack}, departed=(),
                generation=generation, now=t, params=params)
            generation = result.generation
            max_held = max(max_held, sum(r.held for r in rows.values()))
            for inst in mine:  # what changed since its last push, whichever replica granted it
                inst.wanted = inst.admitted = inst.ack = 0
                row = rows[inst.name]
                if row.generation > inst.sent:
                    inst.sent = row.generation
                    heapq.heappush(events, (t + PUSH_DELAY, 2, "share", inst.name,
                                            row.granted, row.generation))
            heapq.heappush(events, (t + period, 0, "refresh", who, 0.0, 0))
            if t >= warmup:
                _sample(samples, rows, by_name, t, params)
                lowest = min([lowest] + [rows[i.name].granted * LIMIT for i in fleet
                                         if i.rate == LIGHT_RATE])
    after = admitted[int(warmup):int(seconds)]
    span = seconds - warmup

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return Outcome(after, mean(samples["total"]), mean(samples["busy"]),
                   mean(samples["light"]), lowest, mean(samples["bd"]), mean(samples["ld"]),
                   refused_light / span, max_held)


def _sample(samples: dict[str, list[float]], rows: dict[str, Holding],
            by_name: dict[str, _Instance], now: float, params: AllocationParams) -> None:
    busy = [n for n in rows if by_name[n].rate == BUSY_RATE]
    light = [n for n in rows if by_name[n].rate == LIGHT_RATE]
    samples["total"].append(sum(r.granted for r in rows.values()) * LIMIT)
    samples["busy"].append(sum(rows[n].granted for n in busy) / len(busy) * LIMIT)
    samples["light"].append(sum(rows[n].granted for n in light) / len(light) * LIMIT)
    samples["bd"].append(sum(demand_now(rows[n], now, params) for n in busy) / len(busy))
    samples["ld"].append(sum(demand_now(rows[n], now, params) for n in light) / len(light))


def describe(outcome: Outcome, label: str) -> str:
    seconds = " ".join(str(a) for a in outcome.admitted_per_second)
    return (
        f"{label}\n"
        f"  admitted per second:  {seconds}\n"
        f"  worst second {outcome.worst_deviation:+.1%} off 500/s, mean "
        f"{sum(outcome.admitted_per_second) / len(outcome.admitted_per_second):.1f}/s; "
        f"granted in all {outcome.granted_total:.1f}/s (most held {outcome.max_held:.4f})\n"
        f"  busy: grant {outcome.busy_grant:.2f}/s, demand read {outcome.busy_demand:.2f}/s "
        f"(wants {BUSY_RATE})\n"
        f"  light: grant {outcome.light_grant:.2f}/s (lowest {outcome.light_grant_lowest:.2f}), "
        f"demand read {outcome.light_demand:.2f}/s (wants {LIGHT_RATE}), "
        f"refused {outcome.light_refused_per_second:.1f}/s in all"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--burst", type=int, nargs="+", default=[LIMIT, 50])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for burst in args.burst:
        for replicas in args.replicas:
            outcome = simulate(seconds=args.seconds, replicas=replicas, burst=burst,
                               seed=args.seed)
            print(describe(outcome, f"burst {burst}, {replicas} replica(s), seed {args.seed}"))


if __name__ == "__main__":
    main()
