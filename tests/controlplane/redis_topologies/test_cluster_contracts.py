"""The spec-store contract and the breaker-store behavioural suite, on a real
3-master Redis Cluster (``redis+cluster://``).

The test functions are the suites' own (imported, so they are collected here
as well); only the fixtures that open a store differ. Left out: the durability
test, which restarts a single redis-server (``fresh_redis``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fusebox.controlplane.breakers.redis import RedisBreakerStore
from fusebox.controlplane.spec_store.base import SpecStore
from fusebox.controlplane.spec_store.redis import RedisSpecStore
from tests.controlplane.breakers import test_breaker_store_contract as breaker_contract
from tests.controlplane.breakers.breaker_cases import ManualClock
from tests.controlplane.spec_store import test_spec_store_contract as spec_contract

_NOT_ON_A_CLUSTER = {"test_specs_and_history_survive_a_restart"}


def _tests_of(module: Any, prefix: str) -> dict[str, Any]:
    return {
        f"test_{prefix}_{name.removeprefix('test_')}": test
        for name, test in vars(module).items()
        if name.startswith("test_") and callable(test) and name not in _NOT_ON_A_CLUSTER
    }


globals().update(_tests_of(spec_contract, "specs"))
globals().update(_tests_of(breaker_contract, "breakers"))


@pytest.fixture
def open_spec_store(redis_cluster_url: str) -> Callable[[], SpecStore]:
    """Opens a spec store on the cluster; calling it again opens another object."""
    return lambda: RedisSpecStore(redis_cluster_url)


@pytest.fixture
async def store(open_spec_store: Callable[[], SpecStore]) -> AsyncIterator[SpecStore]:
    opened = open_spec_store()
    await opened.ping()
    yield opened
    await opened.close()


@pytest.fixture
async def home(redis_cluster_url: str) -> AsyncIterator[breaker_contract.Home]:
    """A breaker store over 16 partitions: their hash tags spread over all 3 masters."""
    clock = ManualClock()
    breakers = RedisBreakerStore(redis_cluster_url, clock=clock, partitions=16)
    await breakers.ping()
    yield breaker_contract.Home(breakers, clock)
    await breakers.close()
