"""How the hub merges one tick's reports per breaker: runs join across reports, except
that a quorum policy's runs keep their instance (its store counts instances)."""

from __future__ import annotations

from fusebox.controlplane.server.engines.breaker_hub import merge_attributed_runs, merge_runs
from tests.controlplane.breakers.breaker_cases import batch


def test_runs_of_one_breaker_join_across_reports_in_arrival_order() -> None:
    assert merge_runs([(2, -1), (-2, 3), (0, 4)]) == (2, -3, 7)


def test_attributed_runs_join_only_within_one_instance() -> None:
    runs, instances = merge_attributed_runs([
        batch((2, -1), instance="a"),
        batch((-2, 3), instance="b"),
        batch((4,), instance="b"),
        batch((-1, 0, -1), instance="a"),
    ])
    assert runs == (2, -1, -2, 7, -2)
    assert instances == ("a", "a", "b", "b", "a")


def test_already_attributed_batches_keep_their_instances() -> None:
    runs, instances = merge_attributed_runs([
        batch((-1, -1), instance="x", run_instances=("a", "b")),
        batch((-3,), instance="b"),
    ])
    assert (runs, instances) == ((-1, -4), ("a", "b"))
