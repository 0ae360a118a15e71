"""The store contract, run against every store: embedded SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from fusebox.controlplane.spec_store.base import (
    RevisionAction,
    RevisionConflict,
    SpecNotFound,
    SpecStore,
    SpecWrite,
)
from fusebox.controlplane.spec_store.embedded import EmbeddedSpecStore
from fusebox.controlplane.spec_store.redis import RedisSpecStore
from tests.controlplane.spec_store.spec_store_cases import (
    digest_of,
    next_change,
    spec_write,
    within_deadline,
)
from tests.support.redis_server import RedisServer

StoreFactory = Callable[[], SpecStore]


@pytest.fixture(params=["embedded", "redis"])
def open_spec_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> StoreFactory:
    """Opens a store object; calling it again opens a new object on the same data."""
    if request.param == "embedded":
        return lambda: EmbeddedSpecStore(tmp_path / "fusebox.sqlite3")
    url = request.getfixturevalue("redis_url")
    return lambda: RedisSpecStore(url)


@pytest.fixture
async def store(open_spec_store: StoreFactory) -> AsyncIterator[SpecStore]:
    opened = open_spec_store()
    await opened.ping()
    yield opened
    await opened.close()


# -- apply / get / list ------------------------------------------------------


async def test_applied_spec_reads_back_with_its_text_document_and_digest(store: SpecStore) -> None:
    write = spec_write("resiliency", "5s")
    [result] = await store.apply([write])
    assert (result.namespace, result.name, result.revision, result.changed) == (
        "default",
        "resiliency",
        1,
        True,
    )
    stored = await store.get("default", "resiliency")
    assert stored.revision == 1
    assert stored.yaml == write.yaml
    assert stored.document == write.document
    assert stored.digest == write.digest
    assert stored.update_time > 0


async def test_documents_round_trip_exactly(store: SpecStore) -> None:
    document = {
        "spec": {"empty": {}, "list": [], "big": 2**53 + 1, "ratio": 0.1, "text": "héllo ✓"},
        "nested": MappingProxyType({"deep": [1, {"x": None, "y": True}]}),
    }
    write = SpecWrite("default", "odd", "yaml: text", document, digest_of({"k": 1}))
    await store.apply([write])
    stored = await store.get("default", "odd")
    assert stored.document == {
        "spec": {"empty": {}, "list": [], "big": 2**53 + 1, "ratio": 0.1, "text": "héllo ✓"},
        "nested": {"deep": [1, {"x": None, "y": True}]},
    }


async def test_list_returns_live_specs_sorted_and_filters_by_namespace(store: SpecStore) -> None:
    await store.apply([spec_write("b", namespace="prod"), spec_write("a", namespace="prod")])
    await store.apply([spec_write("z", namespace="default")])
    specs, store_revision = await store.list()
    assert [(s.namespace, s.name) for s in specs] == [
        ("default", "z"),
        ("prod", "a"),
        ("prod", "b"),
    ]
    assert store_revision == await store.store_revision() == 2
    prod, _ = await store.list("prod")
    assert [s.name for s in prod] == ["a", "b"]
    nothing, _ = await store.list("staging")
    assert nothing == []


async def test_names_with_separators_stay_distinct(store: SpecStore) -> None:
    await store.apply(
        [spec_write("b/c", "1s", namespace="a"), spec_write("c", "2s", namespace="a/b")]
    )
    assert (await store.get("a", "b/c")).document["spec"]["policies"]["timeouts"]["general"] == "1s"
    assert (await store.get("a/b", "c")).document["spec"]["policies"]["timeouts"]["general"] == "2s"
    specs, _ = await store.list()
    assert [(s.namespace, s.name) for s in specs] == [("a", "b/c"), ("a/b", "c")]


async def test_get_of_unknown_spec_raises_not_found(store: SpecStore) -> None:
    with pytest.raises(SpecNotFound, match="spec default/missing not found"):
        await store.get("default", "missing")


# -- revisions -----------------------------------------------------------------


async def test_revisions_start_at_one_and_increase_by_one(store: SpecStore) -> None:
    revisions = []
    for content in ["1s", "2s", "3s"]:
        [result] = await store.apply([spec_write("cb", content)])
        assert result.changed
        revisions.append(result.revision)
    assert revisions == [1, 2, 3]
    assert (await store.get("default", "cb")).revision == 3


async def test_identical_digest_is_a_no_op(store: SpecStore) -> None:
    await store.apply([spec_write("cb", "1s")])
    before = await store.store_revision()
    [result] = await store.apply([spec_write("cb", "1s")])
    assert (result.revision, result.changed) == (1, False)
    assert await store.store_revision() == before
    assert len(await store.history("default", "cb")) == 1


async def test_multi_spec_apply_bumps_store_revision_once_and_reports_each(
    store: SpecStore,
) -> None:
    await store.apply([spec_write("a", "1s")])
    results = await store.apply([spec_write("a", "1s"), spec_write("b", "1s")])
    assert [(r.name, r.revision, r.changed) for r in results] == [("a", 1, False), ("b", 1, True)]
    assert await store.store_revision() == 2


async def test_expected_revision_zero_means_must_not_exist(store: SpecStore) -> None:
    [created] = await store.apply([spec_write("cb", "1s", expected_revision=0)])
    assert created.revision == 1
    with pytest.raises(RevisionConflict) as conflict:
        await store.apply([spec_write("cb", "2s", expected_revision=0)])
    assert (conflict.value.expected, conflict.value.actual) == (0, 1)
    assert (await store.get("default", "cb")).revision == 1


async def test_expected_revision_mismatch_writes_nothing_for_any_spec(store: SpecStore) -> None:
    await store.apply([spec_write("a", "1s"), spec_write("b", "1s")])
    await store.apply([spec_write("b", "2s")])
    before = await store.store_revision()
    with pytest.raises(RevisionConflict) as conflict:
        await store.apply(
            [
                spec_write("a", "9s", expected_revision=1),  # matches
                spec_write("new", "9s", expected_revision=0),  # matches
                spec_write("b", "9s", expected_revision=1),  # b is at 2
            ]
        )
    assert (conflict.value.name, conflict.value.expected, conflict.value.actual) == ("b", 1, 2)
    assert "expected revision 1 but it is at revision 2" in str(conflict.value)
    assert await store.store_revision() == before
    assert (await store.get("default", "a")).revision == 1
    assert (await store.get("default", "b")).revision == 2
    with pytest.raises(SpecNotFound):
        await store.get("default", "new")
    with pytest.raises(SpecNotFound):
        await store.history("default", "new")


async def test_matching_expected_revision_writes(store: SpecStore) -> None:
    await store.apply([spec_write("cb", "1s")])
    [result] = await store.apply([spec_write("cb", "2s", expected_revision=1)])
    assert (result.revision, result.changed) == (2, True)


async def test_apply_rejects_a_spec_twice_and_deletions(store: SpecStore) -> None:
    with pytest.raises(ValueError, match="appears twice"):
        await store.apply([spec_write("cb", "1s"), spec_write("cb", "2s")])
    with pytest.raises(ValueError, match="use delete"):
        await store.apply([spec_write("cb", action=RevisionAction.DELETE)])
    assert await store.store_revision() == 0


# -- delete, history, rollback -------------------------------------------------


async def test_delete_writes_a_tombstone_and_recreating_continues_numbering(
    store: SpecStore,
) -> None:
    await store.apply([spec_write("cb", "1s")])
    await store.apply([spec_write("cb", "2s")])
    assert await store.delete("default", "cb") == 3
    with pytest.raises(SpecNotFound):
        await store.get("default", "cb")
    assert (await store.list())[0] == []
    with pytest.raises(SpecNotFound):
        await store.delete("default", "cb")
    # Deleted counts as "does not exist" for compare-and-set.
    [recreated] = await store.apply([spec_write("cb", "2s", expected_revision=0)])
    assert (recreated.revision, recreated.changed) == (4, True)
    history = await store.history("default", "cb")
    assert [(r.revision, r.action) for r in history] == [
        (1, RevisionAction.APPLY),
        (2, RevisionAction.APPLY),
        (3, RevisionAction.DELETE),
        (4, RevisionAction.APPLY),
    ]
    tombstone = history[2]
    assert (tombstone.digest, tombstone.yaml, tombstone.document) == ("", "", None)


async def test_delete_checks_expected_revision(store: SpecStore) -> None:
    await store.apply([spec_write("cb", "1s")])
    with pytest.raises(RevisionConflict):
        await store.delete("default", "cb", expected_revision=2)
    with pytest.raises(RevisionConflict):
        await store.delete("default", "cb", expected_revision=0)
    assert (await store.get("default", "cb")).revision == 1
    assert await store.delete("default", "cb", expected_revision=1) == 2


async def test_delete_of_unknown_spec_raises_not_found(store: SpecStore) -> None:
    with pytest.raises(SpecNotFound):
        await store.delete("default", "missing")
    assert await store.store_revision() == 0


async def test_old_revisions_stay_readable(store: SpecStore) -> None:
    first = spec_write("cb", "1s")
    await store.apply([first])
    await store.apply([spec_write("cb", "2s")])
    await store.delete("default", "cb")
    old = await store.get("default", "cb", revision=1)
    assert (old.revision, old.yaml, old.document, old.digest) == (
        1,
        first.yaml,
        first.document,
        first.digest,
    )
    assert (await store.get("default", "cb", revision=2)).revision == 2
    with pytest.raises(SpecNotFound, match="revision 3"):
        await store.get("default", "cb", revision=3)  # the tombstone has no content
    with pytest.raises(SpecNotFound, match="revision 9"):
        await store.get("default", "cb", revision=9)


async def test_history_records_actions_in_order(store: SpecStore) -> None:
    first = spec_write("cb", "1s")
    await store.apply([first])
    await store.apply([spec_write("cb", "2s")])
    history = await store.history("default", "cb")
    assert [(r.revision, r.action, r.rolled_back_to) for r in history] == [
        (1, RevisionAction.APPLY, 0),
        (2, RevisionAction.APPLY, 0),
    ]
    assert history[0].yaml == first.yaml
    assert history[0].document == first.document
    assert history[0].create_time <= history[1].create_time
    with pytest.raises(SpecNotFound):
        await store.history("default", "never")


async def test_rollback_write_records_action_and_target(store: SpecStore) -> None:
    await store.apply([spec_write("cb", "1s")])
    await store.apply([spec_write("cb", "2s")])
    old = await store.get("default", "cb", revision=1)
    rollback = SpecWrite(
        namespace="default",
        name="cb",
        yaml=old.yaml,
        document=old.document,
        digest=old.digest,
        expected_revision=2,
        action=RevisionAction.ROLLBACK,
        rolled_back_to=1,
    )
    [result] = await store.apply([rollback])
    assert (result.revision, result.changed) == (3, True)
    live = await store.get("default", "cb")
    assert (live.revision, live.digest, live.yaml) == (3, old.digest, old.yaml)
    last = (await store.history("default", "cb"))[-1]
    assert (last.revision, last.action, last.rolled_back_to) == (3, RevisionAction.ROLLBACK, 1)


async def test_store_revision_moves_with_every_change_only(store: SpecStore) -> None:
    observed = [await store.store_revision()]
    await store.apply([spec_write("a", "1s")])
    observed.append(await store.store_revision())
    await store.apply([spec_write("a", "1s")])  # no-op
    observed.append(await store.store_revision())
    await store.apply([spec_write("b", "1s"), spec_write("a", "2s")])
    observed.append(await store.store_revision())
    await store.delete("default", "a")
    observed.append(await store.store_revision())
    assert observed == [0, 1, 1, 2, 3]


# -- changes -------------------------------------------------------------------


async def test_changes_yields_after_a_write(store: SpecStore) -> None:
    await store.apply([spec_write("a", "1s")])
    start = await store.store_revision()
    changes = store.changes(start)
    waiter = asyncio.ensure_future(next_change(changes))
    await store.apply([spec_write("a", "2s")])
    assert await within_deadline(waiter) == start + 1
    await store.delete("default", "a")
    assert await next_change(changes) == start + 2
    await changes.aclose()  # type: ignore[attr-defined]


async def test_changes_yields_at_once_when_already_past(store: SpecStore) -> None:
    await store.apply([spec_write("a", "1s")])
    await store.apply([spec_write("a", "2s")])
    changes = store.changes(0)
    assert await next_change(changes) == 2
    await changes.aclose()  # type: ignore[attr-defined]


async def test_changes_sees_writes_through_another_store_object(
    store: SpecStore, open_spec_store: StoreFactory
) -> None:
    other = open_spec_store()
    if isinstance(other, EmbeddedSpecStore):
        other = EmbeddedSpecStore(other.path, poll_interval=0.02)  # as another process would
    changes = other.changes(0)
    waiter = asyncio.ensure_future(next_change(changes))
    await store.apply([spec_write("a", "1s")])
    assert await within_deadline(waiter) == 1
    await changes.aclose()  # type: ignore[attr-defined]
    await other.close()


# -- concurrency ---------------------------------------------------------------


async def test_concurrent_compare_and_set_appliers_never_lose_an_update(store: SpecStore) -> None:
    updates_per_task, tasks = 3, 20
    conflicts = 0

    async def applier(task: int) -> None:
        nonlocal conflicts
        for update in range(updates_per_task):
            while True:
                try:
                    current = (await store.get("default", "shared")).revision
                except SpecNotFound:
                    current = 0
                content = f"task{task}-update{update}"
                try:
                    [result] = await store.apply(
                        [spec_write("shared", content, expected_revision=current)]
                    )
                except RevisionConflict:
                    conflicts += 1
                    continue
                assert result.revision == current + 1
                break

    await within_deadline(asyncio.gather(*(applier(task) for task in range(tasks))))
    assert conflicts > 0  # the appliers really did race
    history = await store.history("default", "shared")
    assert [r.revision for r in history] == list(range(1, tasks * updates_per_task + 1))
    written = {r.document["spec"]["policies"]["timeouts"]["general"] for r in history if r.document}
    assert written == {f"task{t}-update{u}" for t in range(tasks) for u in range(updates_per_task)}
    assert (await store.get("default", "shared")).revision == tasks * updates_per_task


async def test_concurrent_unconditional_applies_get_distinct_revisions(store: SpecStore) -> None:
    results = await within_deadline(
        asyncio.gather(*(store.apply([spec_write("shared", f"{n}s")]) for n in range(20)))
    )
    assert sorted(result.revision for [result] in results) == list(range(1, 21))
    assert (await store.get("default", "shared")).revision == 20
    assert await store.store_revision() == 20


# -- durability ----------------------------------------------------------------


@pytest.fixture(params=["embedded", "redis-restart", "redis-kill"])
def reopenable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[StoreFactory, Callable[[], None]]:
    """(open a store, bring the backend down and up again between two store objects)."""
    if request.param == "embedded":
        path = tmp_path / "data" / "fusebox.sqlite3"
        return (lambda: EmbeddedSpecStore(path)), (lambda: None)
    server: RedisServer = request.getfixturevalue("fresh_redis")

    def bounce() -> None:
        server.stop() if request.param == "redis-restart" else server.kill()
        server.start()

    return (lambda: RedisSpecStore(server.url)), bounce


async def test_specs_and_history_survive_a_restart(
    reopenable_store: tuple[StoreFactory, Callable[[], None]],
) -> None:
    open_store, bounce = reopenable_store
    store = open_store()
    await store.apply([spec_write("cb", "1s"), spec_write("other", "1s")])
    await store.apply([spec_write("cb", "2s")])
    await store.delete("default", "other")
    before = (await store.list(), await store.history("default", "cb"))
    control_plane_id = await store.control_plane_id()
    await store.close()

    bounce()
    reopened = open_store()
    await reopened.ping()
    assert (await reopened.list(), await reopened.history("default", "cb")) == before
    assert await reopened.control_plane_id() == control_plane_id
    assert await reopened.store_revision() == 3
    [result] = await reopened.apply([spec_write("other", "3s")])
    assert result.revision == 3  # numbering continues after the tombstone
    await reopened.close()


# -- control-plane identity ----------------------------------------------------------


async def test_the_control_plane_id_is_created_once_and_shared_by_every_store_object(
    store: SpecStore, open_spec_store: StoreFactory
) -> None:
    # Replicas starting together race to create it: all of them get one id.
    others = [open_spec_store() for _ in range(4)]
    ids = await within_deadline(asyncio.gather(
        store.control_plane_id(), *(other.control_plane_id() for other in others)))
    assert len(set(ids)) == 1
    assert str(uuid.UUID(ids[0])) == ids[0]
    assert await store.control_plane_id() == ids[0]  # asked again: the same
    for other in others:
        await other.close()
