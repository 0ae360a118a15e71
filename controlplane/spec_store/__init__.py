"""Spec stores: where resiliency specs and their revision history live.

``open_store(url)`` picks one from a URL; both follow the contract in
``fusebox.controlplane.spec_store.base`` and pass the same contract test suite.
They raise the errors of every store (``fusebox.controlplane.store_errors``).

==========================  =================================================
URL                         Store
==========================  =================================================
``None`` or ``""``          embedded SQLite at ``default_data_dir()/fusebox.sqlite3``
``sqlite:///abs/path.db``   embedded SQLite at that absolute path
``memory://``               embedded SQLite in memory (tests; gone on close)
``redis://host:port/db``    Redis (``rediss://`` for TLS)
``redis+cluster://h:p,h:p`` Redis Cluster (startup nodes)
``redis+sentinel://h:p/m``  Redis behind Sentinel, master name ``m``
==========================  =================================================

The Redis forms and their options are in ``fusebox.controlplane.redis_client``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fusebox.controlplane.spec_store.base import (
    RevisionAction,
    RevisionConflict,
    RevisionRecord,
    SpecNotFound,
    SpecStore,
    SpecWrite,
    StoredSpec,
    WriteResult,
)

__all__ = [
    "DATABASE_FILE_NAME",
    "RevisionAction",
    "RevisionConflict",
    "RevisionRecord",
    "SpecNotFound",
    "SpecStore",
    "SpecWrite",
    "StoredSpec",
    "WriteResult",
    "default_data_dir",
    "open_store",
]

DATABASE_FILE_NAME = "fusebox.sqlite3"

_ACCEPTED = (
    "memory://, sqlite:///ABSOLUTE/PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB, "
    "redis+cluster://HOST:PORT,HOST:PORT or redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME"
)


def default_data_dir() -> Path:
    """Where the embedded store lives when no URL is given.

    ``$FUSEBOX_DATA_DIR``, else ``$XDG_DATA_HOME/fusebox``, else
    ``~/.local/share/fusebox`` (the XDG default).
    """
    explicit = os.environ.get("FUSEBOX_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "fusebox"
    return Path.home() / ".local" / "share" / "fusebox"


def open_store(url: str | None, *, data_dir: Path | None = None) -> SpecStore:
    """The spec store a URL names; creates it without I/O (await ``ping()`` to check it).

    >>> open_store(None)                        # embedded, the default
    >>> open_store("sqlite:///var/lib/fusebox/specs.db")
    >>> open_store("redis://127.0.0.1:6379/0")

    Raises ValueError naming the accepted forms for anything else.
    """
    # Imported here: the Redis store pulls in redis-py, the embedded one does not.
    from fusebox.controlplane.spec_store.embedded import MEMORY, EmbeddedSpecStore

    if not url:
        return EmbeddedSpecStore((data_dir or default_data_dir()) / DATABASE_FILE_NAME)
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"store URL {url!r} has no scheme; accepted: {_ACCEPTED}")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise ValueError(f"store URL {url!r}: memory:// takes nothing after the scheme")
        return EmbeddedSpecStore(MEMORY)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest.rstrip("/") == "":
            raise ValueError(
                f"store URL {url!r}: a sqlite URL needs an absolute file path, "
                "e.g. sqlite:///var/lib/fusebox/fusebox.sqlite3"
            )
        return EmbeddedSpecStore(Path(rest))
    # Imported only now: any Redis scheme pulls in redis-py.
    from fusebox.controlplane.redis_client import REDIS_SCHEMES

    if scheme in REDIS_SCHEMES:
        from fusebox.controlplane.spec_store.redis import RedisSpecStore

        shown = _without_password(url)
        if not rest or rest.startswith("/"):
            raise ValueError(f"store URL {shown!r}: a redis URL needs a host, e.g. redis://HOST:6379/0")
        try:
            return RedisSpecStore(url)
        except ValueError as error:  # parse errors (bad port, bad db, no master name)
            raise ValueError(f"store URL {shown!r}: {error}") from error
    raise ValueError(
        f"store URL {_without_password(url)!r}: unknown scheme {scheme!r}; accepted: {_ACCEPTED}"
    )


def _without_password(url: str) -> str:
    """The URL as it may appear in an error message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
