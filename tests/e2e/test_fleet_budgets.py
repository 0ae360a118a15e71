"""Fleet budgets across real processes (issue 17, "Tests must show"; docs/budgets.md).

Every test runs two ``fusebox serve`` replicas on one real ``redis-server``,
and its service instances as ``AsyncAgent``s in a few ``tests.e2e.budget_agent``
processes, each instance given both replicas (they spread over them). The
upstream is an HTTP server in this process that counts every request by
caller and attempt (``tests.support.budget_upstream``).

The asserts use the guarantees of docs/budgets.md §5 computed from each test's
own ``B``, ``R``, ``N`` and ``t`` (``tests.support.budgets``), never a timing
threshold. Calls are counted where they are admitted, by each instance's
stamp when its attempt starts (the same machine's clock for every process);
the upstream's own count is checked against them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import budget_pb2, budget_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.chaos.support import metric, metrics_args
from tests.support.budget_upstream import BudgetUpstream
from tests.support.budgets import (
    BudgetAgents,
    Fleet,
    budget_spec,
    max_in_window,
    rate_limit_bound,
    retry_bound,
)
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

#: Agent processes per test: the instances are spread over them.
PROCESSES = 3
#: docs/budgets.md §4: an idle instance keeps m x R / N (the minimum share).
MIN_SHARE_FRACTION = 0.1
#: The bound's interval lengths checked besides the whole run.
WINDOWS = (1.0,)
#: Seconds the last calls of a run may take to finish and be reported.
RUN_GRACE = 20.0


@dataclass
class Cluster:
    redis: RedisServer
    servers: list[tuple[ServerProcess, int]]  # (replica, its metrics port)
    workdir: Path

    @property
    def target(self) -> str:
        """Both replicas, for the agents (each shuffles the list)."""
        return "ipv4:" + ",".join(server.address for server, _ in self.servers)

    def apply(self, yaml_text: str) -> None:
        with grpc.insecure_channel(self.servers[0][0].address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=yaml_text, source_name="test"), timeout=10)

    def fleet(self, upstream: BudgetUpstream, app_id: str,
              instances: Sequence[tuple[str, float]], processes: int = PROCESSES) -> Fleet:
        groups = [list(instances[i::processes]) for i in range(processes)]
        return Fleet([
            BudgetAgents(self.workdir, f"{app_id}-{i}", group, upstream=upstream.address,
                         server=self.target, extra=("--app-id", app_id))
            for i, group in enumerate(groups) if group
        ])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path / "redis")
    servers: list[tuple[ServerProcess, int]] = []
    try:
        redis.start()
        for _ in range(2):
            args, port = metrics_args()
            server = ServerProcess(tmp_path, store_url=redis.url, extra_args=args)
            servers.append((server, port))
            server.start()
        yield Cluster(redis, servers, tmp_path)
    finally:
        for server, _ in servers:
            server.stop()
        redis.stop()


@pytest.fixture
def upstream() -> Iterator[BudgetUpstream]:
    with BudgetUpstream() as u:
        yield u


def scoped(spec: str, app_id: str) -> str:
    """``budget_spec`` for caller ``app_id`` instead of ``checkout``."""
    return spec.replace("scopes: [checkout]", f"scopes: [{app_id}]")


def run(fleet: Fleet, seconds: float) -> float:
    """Every instance calls for ``seconds`` from one t0; returns t0 once all are done."""
    t0 = fleet.go(seconds)
    fleet.wait_done(seconds + RUN_GRACE)
    return t0


def series(fleet: Fleet, field: str, instances: Sequence[str] | None = None) -> str:
    return " ".join(f"{v}" for v in fleet.per_second(field, instances).values())


def check_rate_limit_bound(fleet: Fleet, *, burst: int, rate: float, instances: int,
                           seconds: float, cut_off: int = 0) -> None:
    """Every interval of the run, of length ``seconds`` and of each of ``WINDOWS``."""
    times = fleet.admission_times()
    for length in (seconds, *WINDOWS):
        bound = rate_limit_bound(burst=burst, rate=rate, instances=instances, seconds=length,
                                 cut_off=cut_off, last_fleet_size=instances)
        most, at = max_in_window(times, length)
        print(f"most admitted in {length:g} s: {most} (bound {bound:g})")
        assert most <= bound, (
            f"the fleet admitted {most} calls in [{at:.3f}, {at + length:.3f}] s, above the "
            f"bound B + R*t + N + K*(B/N' + 1 + R*t/N') = {bound:g} (B={burst}, R={rate:g}/s, "
            f"N={instances}, t={length:g} s, K={cut_off}); admitted per second: "
            f"{series(fleet, 'admitted')}; refused per second: {series(fleet, 'refused')}")


def check_upstream_agrees(fleet: Fleet, upstream: BudgetUpstream, t0: float) -> None:
    """The upstream saw exactly the attempts the instances counted (the counts are real)."""
    assert fleet.total("errors") == 0, f"calls that broke: {fleet.total('errors')}"
    assert upstream.count(t0) == fleet.total("admitted"), (
        upstream.count(t0), fleet.total("admitted"))


def rate_limit_budget(address: str, app_id: str) -> budget_pb2.Budget:
    """The one rate-limit budget app ``app_id`` holds, as a replica describes it."""
    with grpc.insecure_channel(address) as channel:
        listed = budget_pb2_grpc.BudgetServiceStub(channel).ListBudgets(
            budget_pb2.ListBudgetsRequest(namespace="default"), timeout=10).budgets
    (budget,) = [b for b in listed if b.display_name.endswith(f"@{app_id}")
                 and "/rate-limit/" in b.display_name]
    return budget


def test_twenty_instances_with_10_to_1_skewed_demand_stay_within_the_limit_and_its_slack(
    cluster: Cluster, upstream: BudgetUpstream
) -> None:
    """20 instances share limit 200/s (burst 20): 10 want 30/s, 10 want 3/s (330/s in all).

    Over 10 s the fleet admits at most B + R*t + N = 2040 calls (§5, every instance
    connected: K = 0), and at most 240 in any second. It also admits more than any
    split blind to demand could: an even split (10/s each) admits at most
    sum(min(d_i, R/N)) * t + B + N = 1340 calls; shares that follow demand give
    the busy instances what the idle ones do not use.
    """
    limit, burst, n, seconds = 200, 20, 20, 10.0
    hot, cold = 30.0, 3.0
    app = "rl-skew"
    cluster.apply(scoped(budget_spec("fleet-limit-skew", limit=limit, burst=burst), app))
    instances = [(f"i{k:02d}", hot if k % 2 == 0 else cold) for k in range(n)]
    fleet = cluster.fleet(upstream, app, instances)
    try:
        fleet.wait_ready()
        t0 = run(fleet, seconds)
        check_rate_limit_bound(fleet, burst=burst, rate=limit, instances=n, seconds=seconds)
        even_split = sum(min(d, limit / n) for _, d in instances) * seconds + burst + n
        admitted = fleet.total("admitted")
        busy = [name for name, d in instances if d == hot]
        idle = [name for name, d in instances if d == cold]
        assert admitted > even_split, (
            f"the fleet admitted {admitted} calls in {seconds:g} s: no more than an even split "
            f"of the limit would ({even_split:g}); shares do not follow demand. Busy "
            f"instances per second: {series(fleet, 'admitted', busy)}; idle: "
            f"{series(fleet, 'admitted', idle)}")
        check_upstream_agrees(fleet, upstream, t0)
    finally:
        fleet.stop()


def test_an_instance_that_stops_calling_releases_its_share_to_the_others(
    cluster: Cluster, upstream: BudgetUpstream
) -> None:
    """4 instances each want 120/s of a 200/s limit: each gets a quarter (the busy
    three together ~150/s). Then one stops calling: it keeps only the minimum share
    m x R / N = 5/s, so the three others may admit R - 5 = 195/s. Within
    RELEASE_DEADLINE they admit at least 90% of that in some second, and more than
    they did before."""
    limit, burst, n, demand = 200, 20, 4, 120.0
    stop_at, seconds = 5.0, 13.0
    release_deadline = 5.0  # EWMA of demand (~1 s) + refresh (250 ms) + acks, generously
    app = "rl-release"
    cluster.apply(scoped(budget_spec("fleet-limit-release", limit=limit, burst=burst), app))
    instances = [(f"r{k}", demand) for k in range(n)]
    quitter, busy = instances[0][0], [name for name, _ in instances[1:]]
    fleet = cluster.fleet(upstream, app, instances, processes=2)
    try:
        fleet.wait_ready()
        t0 = fleet.go(seconds)
        eventually(lambda: time.time() >= t0 + stop_at, deadline=stop_at + 5,
                   what="the time to stop one instance")
        fleet.set_rate(quitter, 0.0)
        fleet.wait_done(seconds + RUN_GRACE)
        times = sorted(t for e in fleet.seconds() if e["instance"] in busy
                       for t in e["admit_t"])
        before = [t for t in times if stop_at - 3.0 <= t < stop_at]
        before_rate = len(before) / 3.0
        released = MIN_SHARE_FRACTION * limit / n
        wanted = 0.9 * (limit - released)
        # The first 1 s window (looked at every 50 ms) after the stop where the busy
        # three admit `wanted`.
        rose_at = None
        for step in range(int((seconds - stop_at - 1.0) / 0.05) + 1):
            start = stop_at + step * 0.05
            if sum(1 for t in times if start <= t < start + 1.0) >= wanted:
                rose_at = start + 1.0 - stop_at
                break
        per_second = series(fleet, "admitted", busy)
        assert before_rate < wanted, (
            f"before the stop the busy three already admitted {before_rate:.1f}/s "
            f"(per second: {per_second})")
        assert rose_at is not None and rose_at <= release_deadline, (
            f"the busy three never admitted {wanted:g} calls in a second within "
            f"{release_deadline:g} s of {quitter} stopping (before: {before_rate:.1f}/s; "
            f"per second: {per_second}; {quitter}: {series(fleet, 'admitted', [quitter])})")
        check_rate_limit_bound(fleet, burst=burst, rate=limit, instances=n, seconds=seconds)
        check_upstream_agrees(fleet, upstream, t0)
        print(f"busy three: {before_rate:.1f}/s before, {wanted:g}/s reached {rose_at:.2f} s "
              f"after the stop; per second {per_second}")
    finally:
        fleet.stop()


def test_a_brownout_behind_a_fleet_retry_budget_keeps_upstream_load_near_first_attempts(
    cluster: Cluster, upstream: BudgetUpstream
) -> None:
    """20 instances, 10 first attempts/s each, 60% of answers 503, ``maxRetries: 3``
    (10 ms apart) behind a 20% retry budget with a fleet-wide floor of 5 retries/s.

    Without a budget each call would make 1 + 0.6 + 0.36 + 0.216 = 2.18 attempts.
    With it, over the run (§5): retries <= 0.2 x F + floor x (S/(S-1) x t + window),
    F the first attempts at the upstream (none before the run). A floor per instance
    (Linkerd, Envoy, or each agent alone) would allow 20 times that floor.
    """
    ratio, floor, window, max_retries, n, demand, seconds = 0.2, 5.0, 5.0, 3, 20, 10.0, 10.0
    app = "brownout"
    cluster.apply(scoped(budget_spec("fleet-retries-brownout", max_retries=max_retries,
                                     ratio=ratio, window=f"{window:g}s",
                                     min_retries_per_second=floor), app))
    upstream.fail_ratio = 0.6
    fleet = cluster.fleet(upstream, app, [(f"b{k:02d}", demand) for k in range(n)])
    try:
        fleet.wait_ready()
        t0 = run(fleet, seconds)
        arrivals = upstream.arrivals(t0)
        first = sum(1 for a in arrivals if a.attempt == 1)
        retries = sum(1 for a in arrivals if a.attempt > 1)
        span = max(seconds, arrivals[-1].t - t0) if arrivals else seconds
        bound = retry_bound(first_attempts=first, ratio=ratio, min_retries_per_second=floor,
                            seconds=span, window=window)
        assert first > 0
        assert retries <= bound, (
            f"retries reached the upstream {retries} times for {first} first attempts "
            f"({(first + retries) / first:.3f} requests per first attempt): above the bound "
            f"{ratio:g} x {first} + {floor:g} x ({10 / 9:.3f} x {span:.2f} + {window:g}) = "
            f"{bound:.1f}; retries per second {series(fleet, 'retries')}, skipped per second "
            f"{series(fleet, 'retries_skipped')}")
        check_upstream_agrees(fleet, upstream, t0)
        print(f"brownout: {first} first attempts, {retries} retries "
              f"({(first + retries) / first:.3f} per first attempt; bound {bound:.1f} retries)")
    finally:
        fleet.stop()


def test_a_replica_killed_mid_run_loses_no_budget_state_and_over_admits_nothing(
    cluster: Cluster, upstream: BudgetUpstream
) -> None:
    """The skewed fleet of the first test; 4 s in, the replica holding the most
    instances is SIGKILLed and its instances move to the other.

    Over the whole run, and in every second, the fleet stays within §5's bound
    with K the instances that were cut off long enough to fall back to 1/N (a
    lease ended unrenewed: counted from their own looks at the share they
    enforce). And the budget's state lives in Redis, not in the dead replica: the
    survivor describes the same 20 instances, a generation that went on from the
    victim's last one and no more than the whole budget held; and after the
    failover the fleet still admits more than a demand-blind split could.
    """
    limit, burst, n, seconds, kill_at = 200, 20, 20, 14.0, 4.0
    hot, cold = 30.0, 3.0
    app = "rl-failover"
    cluster.apply(scoped(budget_spec("fleet-limit-failover", limit=limit, burst=burst), app))
    instances = [(f"f{k:02d}", hot if k % 2 == 0 else cold) for k in range(n)]
    fleet = cluster.fleet(upstream, app, instances)
    connected = "fusebox_connected_agents"
    try:
        fleet.wait_ready()
        held: list[float] = []

        def all_connected() -> bool:
            held[:] = [metric(port, connected) or 0.0 for _, port in cluster.servers]
            return sum(held) == n

        eventually(all_connected, deadline=30, what="every instance connected")
        victim_index = 0 if held[0] >= held[1] else 1
        victim, _ = cluster.servers[victim_index]
        survivor_metrics = cluster.servers[1 - victim_index][1]
        t0 = fleet.go(seconds)
        eventually(lambda: time.time() >= t0 + kill_at, deadline=kill_at + 5,
                   what="the time to kill")
        before = rate_limit_budget(victim.address, app)
        victim.kill()
        took = eventually(lambda: metric(survivor_metrics, connected) == n, deadline=10,
                          what="every instance on the surviving replica")
        # The survivor reads the table the dead replica wrote: the same instances, the
        # generation going on from where it was, and no more than the whole budget held.
        after = rate_limit_budget(cluster.servers[1 - victim_index][0].address, app)
        fleet.wait_done(seconds + RUN_GRACE)
        names = {name for name, _ in instances}
        assert {i.instance_id for i in before.instances} == names, before
        assert {i.instance_id for i in after.instances} == names, after
        assert after.generation >= before.generation, (before.generation, after.generation)
        assert sum(i.held for i in after.instances) <= 1.0 + 1e-9, after
        after_kill = [e for e in fleet.seconds() if e["k"] >= int(kill_at)]
        cut_off = len({e["instance"] for e in after_kill if e.get("fallback_samples", 0)})
        print(f"failover took {took:.2f} s after the kill; {held[victim_index]:g} instances "
              f"moved; {cut_off} fell back to 1/N")
        check_rate_limit_bound(fleet, burst=burst, rate=limit, instances=n, seconds=seconds,
                               cut_off=cut_off)
        tail = [t for t in fleet.admission_times() if t >= kill_at + took + 2.0]
        tail_seconds = seconds - (kill_at + took + 2.0)
        even_split = (sum(min(d, limit / n) for _, d in instances) * tail_seconds + burst + n)
        assert len(tail) > even_split, (
            f"after the failover the fleet admitted {len(tail)} calls in {tail_seconds:.1f} s, "
            f"no more than an even split would ({even_split:.0f}): the shares by demand were "
            f"lost with the replica; admitted per second {series(fleet, 'admitted')}")
        check_upstream_agrees(fleet, upstream, t0)
    finally:
        fleet.stop()
