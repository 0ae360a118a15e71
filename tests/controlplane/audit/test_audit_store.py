"""The audit store contract, run against the embedded (SQLite) and Redis stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fusebox.controlplane.audit import (
    AuditAction,
    AuditEntry,
    AuditQuery,
    AuditStore,
    AuditTargetKind,
    open_audit_store,
)
from fusebox.controlplane.audit.embedded import EmbeddedAuditStore
from fusebox.controlplane.audit.redis import RedisAuditStore


class StepClock:
    """Unix seconds that move one second per reading: every record gets its own time."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    audit: AuditStore
    if request.param == "embedded":
        audit = EmbeddedAuditStore(tmp_path / "fusebox.sqlite3", clock=StepClock())
    else:
        audit = RedisAuditStore(request.getfixturevalue("redis_url"), clock=StepClock())
    yield audit
    await audit.close()


def entry(action: AuditAction = AuditAction.SPEC_APPLY, target: str = "default/resiliency",
          namespace: str = "default", actor: str = "alice") -> AuditEntry:
    kind = (AuditTargetKind.BREAKER if action.name.startswith("BREAKER")
            else AuditTargetKind.SPEC)
    return AuditEntry(actor=actor, action=action, target_kind=kind, namespace=namespace,
                      target=target, target_key=target, previous="none",
                      current="revision 1 (sha256:abc)", detail="source spec.yaml")


async def test_a_recorded_entry_is_listed_with_its_time_and_every_field(
    store: AuditStore,
) -> None:
    recorded = await store.record(entry())
    (listed,) = await store.list(AuditQuery())
    assert listed == recorded
    assert listed.entry == entry()
    assert listed.time == 1_700_000_001.0


async def test_events_are_listed_newest_first_and_limited(store: AuditStore) -> None:
    for n in range(5):
        await store.record(entry(target=f"default/spec-{n}"))
    events = await store.list(AuditQuery(limit=3))
    assert [e.entry.target for e in events] == ["default/spec-4", "default/spec-3",
                                                "default/spec-2"]


async def test_filters_select_by_time_kind_namespace_target_and_action(
    store: AuditStore,
) -> None:
    await store.record(entry(AuditAction.SPEC_APPLY, "default/a"))           # t+1
    await store.record(entry(AuditAction.SPEC_DELETE, "prod/b", "prod"))     # t+2
    await store.record(entry(AuditAction.BREAKER_RESET, "checkout:orders"))  # t+3
    await store.record(entry(AuditAction.BREAKER_OVERRIDE, "checkout:pay"))  # t+4

    async def targets(query: AuditQuery) -> list[str]:
        return [e.entry.target for e in await store.list(query)]

    assert await targets(AuditQuery(since=1_700_000_003.0)) == ["checkout:pay", "checkout:orders"]
    assert await targets(AuditQuery(target_kind=AuditTargetKind.SPEC)) == ["prod/b", "default/a"]
    assert await targets(AuditQuery(namespace="prod")) == ["prod/b"]
    assert await targets(AuditQuery(target_contains="orders")) == ["checkout:orders"]
    assert await targets(AuditQuery(target_contains="%")) == []  # literal, not a pattern
    assert await targets(AuditQuery(actions=frozenset({AuditAction.SPEC_DELETE,
                                                       AuditAction.BREAKER_RESET}))) == [
        "checkout:orders", "prod/b"]


async def test_a_limit_of_zero_means_the_default_and_large_limits_are_capped(
    store: AuditStore,
) -> None:
    await store.record(entry())
    assert len(await store.list(AuditQuery(limit=0))) == 1
    assert len(await store.list(AuditQuery(limit=10**9))) == 1


async def test_the_embedded_log_shares_the_spec_database_and_survives_reopening(
    tmp_path: Path,
) -> None:
    from fusebox.controlplane.spec_store import open_store
    from fusebox.controlplane.spec_store.base import SpecWrite

    specs = open_store(None, data_dir=tmp_path)
    first = open_audit_store(None, data_dir=tmp_path)
    await first.record(entry())
    await specs.apply([SpecWrite("default", "r", "", {"a": 1}, "d")])  # same file, both write
    await first.close()
    await specs.close()
    reopened = open_audit_store(f"sqlite:///{tmp_path / 'fusebox.sqlite3'}")
    try:
        assert [e.entry for e in await reopened.list(AuditQuery())] == [entry()]
    finally:
        await reopened.close()


async def test_the_redis_stream_is_capped_and_keeps_the_newest(redis_url: str) -> None:
    store = RedisAuditStore(redis_url, max_events=10, clock=StepClock())
    try:
        for n in range(300):
            await store.record(entry(target=f"default/spec-{n}"))
        events = await store.list(AuditQuery(limit=1000))
        # MAXLEN ~ trims in whole stream nodes: bounded, not exact.
        assert 10 <= len(events) < 300
        assert events[0].entry.target == "default/spec-299"
    finally:
        await store.close()


def test_open_audit_store_follows_the_spec_store_url_rules(tmp_path: Path) -> None:
    assert isinstance(open_audit_store("memory://"), EmbeddedAuditStore)
    assert isinstance(open_audit_store("redis://127.0.0.1:6379/0"), RedisAuditStore)
    with pytest.raises(ValueError, match="unknown scheme"):
        open_audit_store("ftp://example")
    with pytest.raises(ValueError, match="absolute file path"):
        open_audit_store("sqlite://relative.db")
