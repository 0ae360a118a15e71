"""The embedded spec store: one SQLite file from the standard library.

What a newcomer runs first (``fusebox serve`` with no store URL): specs and
their full revision history survive a restart, and nothing else has to run.

Threading: every SQLite call runs on one dedicated worker thread
(``ThreadPoolExecutor(max_workers=1)``) that owns the only connection.
Most calls take microseconds, but a commit fsyncs and a write can wait for
another process holding the file's write lock (``busy_timeout``); neither
should stall the server's event loop and its agent streams. A single worker
also serialises the calls, so no lock is needed, and a cancelled caller cannot
leave a half-used connection behind (the queued job still runs to its end).

Change notification: writes made through this object wake ``changes()``
waiters at once (an ``asyncio.Event``); writes by another process on the same
file are noticed by polling the store revision every ``poll_interval`` seconds
(0.5 s by default, one indexed read).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fusebox.controlplane.spec_store.base import (
    RevisionAction,
    RevisionConflict,
    RevisionRecord,
    SpecNotFound,
    SpecWrite,
    StoredSpec,
    WriteResult,
    check_writes,
    encode_json,
)
from fusebox.controlplane.sqlite_worker import MEMORY, SqliteWorker, open_connection
from fusebox.controlplane.store_errors import StoreError, StoreUnavailable

__all__ = ["MEMORY", "EmbeddedSpecStore"]

"""Pass as ``path`` for a store that lives and dies with the object (tests)."""

_SCHEMA_VERSION = 1

# spec_heads keeps one row per spec ever written: its last revision (tombstones
# included, so numbering continues after a delete) and whether it is live.
# spec_revisions keeps every revision with its content: rollback needs it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spec_heads (
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    last_revision INTEGER NOT NULL,
    live          INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS spec_revisions (
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    revision       INTEGER NOT NULL,
    action         TEXT NOT NULL,
    create_time    REAL NOT NULL,
    digest         TEXT NOT NULL,
    yaml           TEXT NOT NULL,
    document       TEXT,
    rolled_back_to INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, revision)
);
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('store_revision', 0);
CREATE TABLE IF NOT EXISTS store_identity (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_LIVE_SELECT = """
SELECT r.namespace, r.name, r.revision, r.yaml, r.document, r.digest, r.create_time
FROM spec_heads h JOIN spec_revisions r
  ON r.namespace = h.namespace AND r.name = h.name AND r.revision = h.last_revision
WHERE h.live = 1
"""

_T = TypeVar("_T")


class EmbeddedSpecStore:
    """A ``SpecStore`` in one SQLite file (WAL mode), or in memory.

    >>> store = EmbeddedSpecStore(Path("/var/lib/fusebox/fusebox.sqlite3"))
    >>> await store.ping()  # opens the file, creating its directory and tables

    Creating the object does no I/O. Revisions and atomicity follow
    ``fusebox.controlplane.spec_store.base``; each ``apply``/``delete`` is one
    ``BEGIN IMMEDIATE`` transaction, so several processes may share a file.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        poll_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = str(path)
        self._poll_interval = poll_interval
        self._clock = clock
        # Locked past busy_timeout, disk full, I/O error: the store cannot serve.
        self._worker = SqliteWorker(f"spec store {self._path}", self._connect,
                                    thread_name="fusebox-sqlite",
                                    unavailable=(sqlite3.OperationalError,))
        self._changed = asyncio.Event()  # replaced after every local write

    @property
    def path(self) -> str:
        return self._path

    # -- the SpecStore contract -------------------------------------------

    async def apply(self, writes: Sequence[SpecWrite]) -> builtins.list[WriteResult]:
        check_writes(writes)
        if not writes:
            return []
        results = await self._run(self._apply_sync, list(writes), self._clock())
        if any(result.changed for result in results):
            self._wake_waiters()
        return results

    async def get(self, namespace: str, name: str, revision: int = 0) -> StoredSpec:
        return await self._run(self._get_sync, namespace, name, revision)

    async def list(self, namespace: str | None = None) -> tuple[builtins.list[StoredSpec], int]:
        return await self._run(self._list_sync, namespace)

    async def delete(self, namespace: str, name: str, expected_revision: int | None = None) -> int:
        revision = await self._run(
            self._delete_sync, namespace, name, expected_revision, self._clock()
        )
        self._wake_waiters()
        return revision

    async def history(self, namespace: str, name: str) -> builtins.list[RevisionRecord]:
        return await self._run(self._history_sync, namespace, name)

    async def store_revision(self) -> int:
        return await self._run(self._store_revision_sync)

    async def control_plane_id(self) -> str:
        return await self._run(self._control_plane_id_sync)

    async def changes(self, after: int) -> AsyncIterator[int]:
        seen = after
        while True:
            # Take the event before reading, so a write landing between the
            # read and the wait still wakes us.
            changed = self._changed
            current = await self.store_revision()
            if current > seen:
                seen = current
                yield current
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self._poll_interval)

    async def ping(self) -> None:
        await self._run(self._ping_sync)

    async def close(self) -> None:
        await self._worker.close()

    # -- plumbing ----------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await self._worker.run(function, *args)

    def _wake_waiters(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _db(self) -> sqlite3.Connection:
        return self._worker.connection()

    def _connect(self) -> sqlite3.Connection:
        connection = open_connection(self._path, f"spec store {self._path}")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreError(
                    f"spec store {self._path} has schema version {version}; this fusebox "
                    f"understands up to {_SCHEMA_VERSION} (upgrade fusebox)"
                )
            connection.executescript(_SCHEMA)
            # Created once for the file: the first process to open it wins.
            connection.execute(
                "INSERT OR IGNORE INTO store_identity (key, value)"
                " VALUES ('control_plane_id', ?)", (str(uuid.uuid4()),),
            )
            connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error as error:
            connection.close()
            raise StoreUnavailable(f"cannot open spec store {self._path}: {error}") from error
        except StoreError:
            connection.close()
            raise
        return connection

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute(begin)
        try:
            yield db
            db.execute("COMMIT")
        finally:
            # Set only when the body or COMMIT failed (a busy COMMIT keeps it open).
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _ping_sync(self) -> None:
        _store_revision(self._db())

    # -- the operations, run on the worker thread -------------------------

    def _apply_sync(self, writes: Sequence[SpecWrite], now: float) -> builtins.list[WriteResult]:
        with self._transaction("BEGIN IMMEDIATE") as db:
            heads = [_live_head(db, write.namespace, write.name) for write in writes]
            for write, (live_revision, _) in zip(writes, heads, strict=True):
                expected = write.expected_revision
                if expected is not None and expected != live_revision:
                    raise RevisionConflict(write.namespace, write.name, expected, live_revision)
            results: builtins.list[WriteResult] = []
            for write, (live_revision, live_digest) in zip(writes, heads, strict=True):
                if live_revision and live_digest == write.digest:
                    results.append(WriteResult(write.namespace, write.name, live_revision, False))
                    continue
                revision = _next_revision(db, write.namespace, write.name)
                db.execute(
                    "INSERT INTO spec_revisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        write.namespace,
                        write.name,
                        revision,
                        write.action.value,
                        now,
                        write.digest,
                        write.yaml,
                        encode_json(write.document),
                        write.rolled_back_to,
                    ),
                )
                _set_head(db, write.namespace, write.name, revision, live=True)
                results.append(WriteResult(write.namespace, write.name, revision, True))
            if any(result.changed for result in results):
                _bump_store_revision(db)
        return results

    def _delete_sync(
        self, namespace: str, name: str, expected_revision: int | None, now: float
    ) -> int:
        with self._transaction("BEGIN IMMEDIATE") as db:
            live_revision, _ = _live_head(db, namespace, name)
            if not live_revision:
                raise SpecNotFound(namespace, name)
            if expected_revision is not None and expected_revision != live_revision:
                raise RevisionConflict(namespace, name, expected_revision, live_revision)
            revision = live_revision + 1
            db.execute(
                "INSERT INTO spec_revisions VALUES (?, ?, ?, ?, ?, '', '', NULL, 0)",
                (namespace, name, revision, RevisionAction.DELETE.value, now),
            )
            _set_head(db, namespace, name, revision, live=False)
            _bump_store_revision(db)
        return revision

    def _get_sync(self, namespace: str, name: str, revision: int) -> StoredSpec:
        db = self._db()
        if revision == 0:
            row = db.execute(
                _LIVE_SELECT + " AND h.namespace = ? AND h.name = ?", (namespace, name)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT namespace, name, revision, yaml, document, digest, create_time"
                " FROM spec_revisions WHERE namespace = ? AND name = ? AND revision = ?"
                " AND action != ?",
                (namespace, name, revision, RevisionAction.DELETE.value),
            ).fetchone()
        if row is None:
            raise SpecNotFound(namespace, name, revision)
        return _stored_spec(row)

    def _list_sync(self, namespace: str | None) -> tuple[builtins.list[StoredSpec], int]:
        # One read transaction: the list and the revision are one snapshot.
        with self._transaction() as db:
            if namespace is None:
                rows = db.execute(_LIVE_SELECT + " ORDER BY h.namespace, h.name").fetchall()
            else:
                rows = db.execute(
                    _LIVE_SELECT + " AND h.namespace = ? ORDER BY h.name", (namespace,)
                ).fetchall()
            store_revision = _store_revision(db)
        return [_stored_spec(row) for row in rows], store_revision

    def _history_sync(self, namespace: str, name: str) -> builtins.list[RevisionRecord]:
        rows = (
            self._db()
            .execute(
                "SELECT revision, action, create_time, digest, yaml, document, rolled_back_to"
                " FROM spec_revisions WHERE namespace = ? AND name = ? ORDER BY revision",
                (namespace, name),
            )
            .fetchall()
        )
        if not rows:
            raise SpecNotFound(namespace, name)
        return [
            RevisionRecord(
                revision=revision,
                action=RevisionAction(action),
                create_time=create_time,
                digest=digest,
                yaml=yaml,
                document=None if document is None else json.loads(document),
                rolled_back_to=rolled_back_to,
            )
            for revision, action, create_time, digest, yaml, document, rolled_back_to in rows
        ]

    def _store_revision_sync(self) -> int:
        return _store_revision(self._db())

    def _control_plane_id_sync(self) -> str:
        row = self._db().execute(
            "SELECT value FROM store_identity WHERE key = 'control_plane_id'"
        ).fetchone()
        return str(row[0])


def _live_head(db: sqlite3.Connection, namespace: str, name: str) -> tuple[int, str]:
    """(live revision, live digest), or (0, "") when absent or deleted."""
    row = db.execute(
        "SELECT r.revision, r.digest FROM spec_heads h JOIN spec_revisions r"
        " ON r.namespace = h.namespace AND r.name = h.name AND r.revision = h.last_revision"
        " WHERE h.live = 1 AND h.namespace = ? AND h.name = ?",
        (namespace, name),
    ).fetchone()
    return (0, "") if row is None else (int(row[0]), str(row[1]))


def _next_revision(db: sqlite3.Connection, namespace: str, name: str) -> int:
    row = db.execute(
        "SELECT last_revision FROM spec_heads WHERE namespace = ? AND name = ?",
        (namespace, name),
    ).fetchone()
    return 1 if row is None else int(row[0]) + 1


def _set_head(db: sqlite3.Connection, namespace: str, name: str, revision: int, live: bool) -> None:
    db.execute(
        "INSERT INTO spec_heads (namespace, name, last_revision, live) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (namespace, name)"
        " DO UPDATE SET last_revision = excluded.last_revision, live = excluded.live",
        (namespace, name, revision, int(live)),
    )


def _bump_store_revision(db: sqlite3.Connection) -> None:
    db.execute("UPDATE store_meta SET value = value + 1 WHERE key = 'store_revision'")


def _store_revision(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM store_meta WHERE key = 'store_revision'").fetchone()
    return int(row[0])


def _stored_spec(row: tuple[Any, ...]) -> StoredSpec:
    namespace, name, revision, yaml, document, digest, update_time = row
    return StoredSpec(
        namespace=namespace,
        name=name,
        revision=revision,
        yaml=yaml,
        document=json.loads(document),
        digest=digest,
        update_time=update_time,
    )
