"""One SQLite connection owned by one worker thread, for asyncio callers.

sqlite3 objects must stay on the thread that made them, and a commit's fsync
(or a wait on another process's write lock) must not stall the event loop:
every call runs on one dedicated thread, which also serialises them, even if
a caller is cancelled. The embedded spec store and the audit store use it.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from fusebox.controlplane.store_errors import StoreUnavailable

_T = TypeVar("_T")

MEMORY = ":memory:"


def open_connection(path: str, what: str) -> sqlite3.Connection:
    """A durable connection to ``path``: WAL, fsync on commit, explicit transactions.

    ``isolation_level=None``: callers issue BEGIN/COMMIT themselves, so reads
    outside a transaction always see other processes' commits. FULL sync: a
    commit is on disk before the write returns (these writes are rare).
    Raises StoreUnavailable naming ``what`` when the file cannot be opened.
    """
    try:
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    except (OSError, sqlite3.Error) as error:
        raise StoreUnavailable(f"cannot open {what}: {error}") from error
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as error:
        connection.close()
        raise StoreUnavailable(f"cannot open {what}: {error}") from error
    return connection


class SqliteWorker:
    """``run(fn, *args)`` calls ``fn`` on the worker; ``fn`` uses ``connection()``."""

    def __init__(
        self,
        what: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        thread_name: str,
        unavailable: tuple[type[Exception], ...] = (sqlite3.Error,),
    ) -> None:
        self._what = what  # e.g. "spec store /path/fusebox.sqlite3", for error messages
        self._connect = connect
        self._unavailable = unavailable
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._connection: sqlite3.Connection | None = None  # touched by the worker only
        self.closed = False

    def connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (call on the worker thread only)."""
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        if self.closed:
            raise StoreUnavailable(f"{self._what} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(function, *args))
        except self._unavailable as error:
            raise StoreUnavailable(f"{self._what}: {error}") from error

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
