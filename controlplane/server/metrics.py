"""Prometheus metrics of one server replica (`--metrics-listen`; every metric
is listed in docs/observability.md, "Server").

Each server owns its registry, so several servers in one process (tests) do
not collide. Breaker state follows Dapr's `dapr_resiliency_cb_state`: one
series per breaker and state, 1 for the current state and 0 for the others;
`fusebox_fleet_resiliency_loaded` follows `dapr_resiliency_loaded`, counted over the
agents connected here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fusebox.agent.breaker import BreakerState
from fusebox.controlplane.breakers.model import BreakerEvent

_BREAKER_LABELS = ("namespace", "spec", "kind", "target", "method", "name")
#: A transition should reach every agent in tens of milliseconds; a snapshot
#: may take longer (agents re-create their policies), hence the seconds too.
CONVERGENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                       5.0, 10.0, 30.0)

#: (namespace, name, agents): one spec and how many agents here hold it.
LoadedSpec = tuple[str, str, int]


class _ResiliencyLoaded(Collector):
    """``fusebox_fleet_resiliency_loaded``, read at scrape time from the policy hub."""

    def __init__(self, loaded: Callable[[], Iterable[LoadedSpec]]) -> None:
        self._loaded = loaded

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "fusebox_fleet_resiliency_loaded",
            "Agents connected to this replica whose accepted policies have this spec in "
            "scope (as dapr_resiliency_loaded, per spec); 0 for a stored spec no agent "
            "here holds.",
            labels=("namespace", "name"),
        )
        for namespace, name, agents in self._loaded():
            family.add_metric((namespace, name), float(agents))
        yield family


class Metrics:
    def __init__(
        self,
        connected_agents: Callable[[], int] = lambda: 0,
        loaded_specs: Callable[[], Iterable[LoadedSpec]] = lambda: (),
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.breaker_state = Gauge(
            "fusebox_fleet_cb_state",
            "Circuit breaker state: 1 for the current state, 0 for the others "
            "(as dapr_resiliency_cb_state).",
            [*_BREAKER_LABELS, "status"], registry=r,
        )
        self.transitions = Counter(
            "fusebox_breaker_transitions", "Breaker state changes seen by this replica.",
            ["from_state", "to_state", "cause"], registry=r,
        )
        self.outcomes_ingested = Counter(
            "fusebox_outcomes_ingested", "Call outcomes received in agent reports.", registry=r
        )
        self.outcomes_stale = Counter(
            "fusebox_outcomes_stale",
            "Call outcomes dropped: made under a breaker generation older than the newest "
            "this replica has seen (as gobreaker ignores results of a past generation).",
            registry=r,
        )
        self.reports_ingested = Counter(
            "fusebox_reports_ingested", "OutcomeReport messages received.", registry=r
        )
        self.reports_rejected = Counter(
            "fusebox_reports_rejected",
            "Report entries refused (no policy for the breaker, invalid key).", registry=r,
        )
        self.apply_seconds = Histogram(
            "fusebox_report_apply_seconds",
            "Time to apply one tick of merged outcomes to the breaker store (report lag).",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5), registry=r,
        )
        self.push_latency = Histogram(
            "fusebox_breaker_push_latency_seconds",
            "From a transition's time to its update being queued to agents.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0), registry=r,
        )
        agents = Gauge("fusebox_connected_agents", "Agents connected to this replica.",
                       registry=r)
        agents.set_function(lambda: float(connected_agents()))
        r.register(_ResiliencyLoaded(loaded_specs))
        self.target_calls = Counter(
            "fusebox_target_calls",
            "Breaker-guarded calls reported by agents, per calling app and target (methods "
            "and instances summed): outcome success, failure, or rejected (by an open "
            "breaker, not run).",
            ["namespace", "app_id", "spec", "kind", "target", "outcome"], registry=r,
        )
        self.breaker_convergence = Histogram(
            "fusebox_breaker_convergence_seconds",
            "From a breaker transition to the last agent holding the breaker (connected "
            "here, when the update was pushed) acknowledging it (as Istio's "
            "pilot_proxy_convergence_time).",
            ["to_state"], buckets=CONVERGENCE_BUCKETS, registry=r,
        )
        self.policy_convergence = Histogram(
            "fusebox_policy_convergence_seconds",
            "From this replica seeing a spec change to the last agent it offered the new "
            "policy snapshot to acknowledging it (PolicyAck).",
            buckets=CONVERGENCE_BUCKETS, registry=r,
        )
        self.convergence_unfinished = Counter(
            "fusebox_convergence_unfinished",
            "Changes whose convergence was not observed: reason expired (not every agent "
            "answered within the deadline), nacked (an agent refused the snapshot), "
            "abandoned (every agent waited for disconnected first).",
            ["kind", "reason"], registry=r,
        )
        self.convergence_pending = Gauge(
            "fusebox_convergence_pending",
            "Changes this replica is waiting for agents to acknowledge.",
            ["kind"], registry=r,
        )

        # Fleet budgets (docs/budgets.md): usage reported by the agents connected here,
        # per calling app and target; the fleet's allocation as this replica last ran it.
        budget_labels = ("namespace", "app", "target", "kind")
        self.budget_admitted = Counter(
            "fusebox_budget_admitted",
            "Calls (rate limit; counted retries included) or retries (retry budget) that "
            "agents connected here admitted under a fleet budget, per calling app and target.",
            budget_labels, registry=r,
        )
        self.budget_refused = Counter(
            "fusebox_budget_refused",
            "Calls refused (or waited out) by a rate limit, or retries skipped by a retry "
            "budget, in agents connected here, per calling app and target.",
            budget_labels, registry=r,
        )
        self.budget_instances = Gauge(
            "fusebox_budget_instances",
            "Instances sharing a fleet budget (every replica's), at this replica's last "
            "refresh of it; app is the budget's calling app (\"\" for scope: fleet).",
            budget_labels, registry=r,
        )
        self.budget_free_share = Gauge(
            "fusebox_budget_free_share",
            "Fraction of a fleet budget no instance holds, at this replica's last refresh.",
            budget_labels, registry=r,
        )
        self.budget_refresh_seconds = Histogram(
            "fusebox_budget_refresh_seconds",
            "Time of one allocation refresh of every budget held here (one store call per "
            "budget, pipelined).",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5), registry=r,
        )

    def watch_pending(self, kind: str, pending: Callable[[], int]) -> None:
        """Read ``fusebox_convergence_pending{kind}`` from ``pending`` at scrape time."""
        self.convergence_pending.labels(kind).set_function(lambda: float(pending()))

    def unfinished(self, kind: str) -> Callable[[str], None]:
        """What a convergence tracker of ``kind`` calls for a change it drops."""
        return lambda reason: self.convergence_unfinished.labels(kind, reason).inc()

    def observe_transition(self, event: BreakerEvent, now: float | None = None) -> None:
        i = event.key
        labels = (i.namespace, i.spec, i.kind.value, i.target, i.method, i.display_name)
        for state in BreakerState:
            self.breaker_state.labels(*labels, state.value).set(
                1.0 if state is event.to_state else 0.0
            )
        self.transitions.labels(
            event.from_state.value, event.to_state.value, event.cause.value
        ).inc()
        self.push_latency.observe(max(0.0, (now or time.time()) - event.at))
