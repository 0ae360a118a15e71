"""What only the embedded store has: files, directories, schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fusebox.controlplane.spec_store.embedded import MEMORY, EmbeddedSpecStore
from fusebox.controlplane.store_errors import StoreError, StoreUnavailable
from tests.controlplane.spec_store.spec_store_cases import spec_write


async def test_creating_a_store_touches_nothing_and_first_use_creates_directories(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a" / "b" / "fusebox.sqlite3"
    store = EmbeddedSpecStore(path)
    assert not (tmp_path / "a").exists()
    await store.ping()
    assert path.is_file()
    await store.close()


async def test_a_path_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    store = EmbeddedSpecStore(tmp_path / "a-file" / "fusebox.sqlite3")
    with pytest.raises(StoreUnavailable, match="cannot open spec store"):
        await store.ping()
    await store.close()


async def test_the_file_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "fusebox.sqlite3"
    store = EmbeddedSpecStore(path)
    await store.apply([spec_write("cb")])
    await store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
    connection.close()


async def test_a_file_from_a_newer_fusebox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fusebox.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version=99")
    connection.close()
    store = EmbeddedSpecStore(path)
    with pytest.raises(StoreError, match="schema version 99"):
        await store.ping()
    await store.close()


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = EmbeddedSpecStore(tmp_path / "fusebox.sqlite3")
    await store.ping()
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.store_revision()


async def test_memory_store_forgets_everything_on_close() -> None:
    store = EmbeddedSpecStore(MEMORY)
    await store.apply([spec_write("cb")])
    assert await store.store_revision() == 1
    await store.close()
    again = EmbeddedSpecStore(MEMORY)
    assert await again.store_revision() == 0
    await again.close()


async def test_a_file_from_before_control_plane_ids_gets_one_that_then_stays(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fusebox.sqlite3"
    store = EmbeddedSpecStore(path)
    await store.apply([spec_write("cb")])
    await store.close()
    with sqlite3.connect(path) as connection:  # as an earlier fusebox left it
        connection.execute("DROP TABLE store_identity")
    connection.close()
    first, again = EmbeddedSpecStore(path), EmbeddedSpecStore(path)
    created = await first.control_plane_id()
    assert created and await again.control_plane_id() == created
    assert (await first.get("default", "cb")).revision == 1
    await first.close()
    await again.close()


async def test_another_file_is_another_control_plane(tmp_path: Path) -> None:
    first = EmbeddedSpecStore(tmp_path / "a" / "fusebox.sqlite3")
    second = EmbeddedSpecStore(tmp_path / "b" / "fusebox.sqlite3")
    assert await first.control_plane_id() != await second.control_plane_id()
    await first.close()
    await second.close()
