"""The embedded audit store: a table in the embedded store's SQLite file.

It shares the spec store's database file (its own table, its own connection:
WAL mode lets both write) so ``fusebox serve`` with no URL keeps one file.
Like the spec store, every SQLite call runs on one dedicated worker thread so
a commit's fsync never stalls the event loop.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fusebox.controlplane.audit.model import (
    AuditAction,
    AuditEntry,
    AuditEvent,
    AuditQuery,
    AuditTargetKind,
    clamp_limit,
)
from fusebox.controlplane.sqlite_worker import MEMORY, SqliteWorker, open_connection
from fusebox.controlplane.store_errors import StoreUnavailable

__all__ = ["MEMORY", "EmbeddedAuditStore"]


# No PRAGMA user_version here: that number belongs to the spec store's schema.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        REAL NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    target      TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    previous    TEXT NOT NULL,
    current     TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
"""
_COLUMNS = ("id, time, actor, action, target_kind, namespace, target, target_key, previous, "
            "current, detail")

_T = TypeVar("_T")


class EmbeddedAuditStore:
    """An ``AuditStore`` in a SQLite file (or in memory); no I/O until first used."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._path = str(path)
        self._clock = clock
        self._worker = SqliteWorker(f"audit store {self._path}", self._connect,
                                    thread_name="fusebox-audit")

    async def record(self, entry: AuditEntry) -> AuditEvent:
        now = self._clock()
        row_id = await self._run(self._record_sync, entry, now)
        return AuditEvent(id=str(row_id), time=now, entry=entry)

    async def list(self, query: AuditQuery) -> builtins.list[AuditEvent]:
        return await self._run(self._list_sync, query)

    async def ping(self) -> None:
        await self._run(self._db)

    async def close(self) -> None:
        await self._worker.close()

    # -- plumbing ------------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await self._worker.run(function, *args)

    def _db(self) -> sqlite3.Connection:
        return self._worker.connection()

    def _connect(self) -> sqlite3.Connection:
        connection = open_connection(self._path, f"audit store {self._path}")
        try:
            connection.executescript(_SCHEMA)
        except sqlite3.Error as error:
            connection.close()
            raise StoreUnavailable(f"cannot open audit store {self._path}: {error}") from error
        return connection

    def _record_sync(self, entry: AuditEntry, now: float) -> int:
        cursor = self._db().execute(
            f"INSERT INTO audit_events ({_COLUMNS.removeprefix('id, ')}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, entry.actor, entry.action.value, entry.target_kind.value, entry.namespace,
             entry.target, entry.target_key, entry.previous, entry.current, entry.detail),
        )
        return int(cursor.lastrowid or 0)

    def _list_sync(self, query: AuditQuery) -> builtins.list[AuditEvent]:
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if query.since is not None:
            clauses.append("time >= ?")
            params.append(query.since)
        if query.target_kind is not None:
            clauses.append("target_kind = ?")
            params.append(query.target_kind.value)
        if query.namespace:
            clauses.append("namespace = ?")
            params.append(query.namespace)
        if query.target_contains:
            # instr, not LIKE: the text is matched literally (no % or _ wildcards).
            clauses.append("(instr(target, ?) > 0 OR instr(target_key, ?) > 0)")
            params += [query.target_contains, query.target_contains]
        if query.actions:
            values = sorted(a.value for a in query.actions)
            clauses.append(f"action IN ({', '.join('?' for _ in values)})")
            params += values
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().execute(
            f"SELECT {_COLUMNS} FROM audit_events {where} ORDER BY time DESC, id DESC LIMIT ?",
            (*params, clamp_limit(query.limit)),
        ).fetchall()
        return [_event(row) for row in rows]


def _event(row: tuple[Any, ...]) -> AuditEvent:
    (row_id, at, actor, action, kind, namespace, target, key, previous, current, detail) = row
    return AuditEvent(
        id=str(row_id), time=float(at),
        entry=AuditEntry(
            actor=actor, action=AuditAction(action), target_kind=AuditTargetKind(kind),
            namespace=namespace, target=target, target_key=key, previous=previous,
            current=current, detail=detail,
        ),
    )
