"""Prometheus metrics of one server replica (`--metrics-listen`).

Each server owns its registry, so several servers in one process (tests) do
not collide. Breaker state follows Dapr's `dapr_resiliency_cb_state`: one
series per breaker and state, 1 for the current state and 0 for the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fusebox.agent.breaker import BreakerState
from fusebox.controlplane.breakers.model import BreakerEvent

_BREAKER_LABELS = ("namespace", "spec", "kind", "target", "method", "name")


class Metrics:
    def __init__(self, connected_agents: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.breaker_state = Gauge(
            "fusebox_resiliency_cb_state",
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

    def serve(self, listen: str) -> int:
        """Expose /metrics over HTTP on ``listen`` (host:port); returns the port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1",
                                            registry=self.registry)
        bound: int = server.server_port
        return bound
