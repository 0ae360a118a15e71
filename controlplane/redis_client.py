"""One place that turns a store URL into a redis-py asyncio client.

Every Redis-backed store (specs, breakers, audit) connects through
``connect_redis``, so the three topologies work the same everywhere:

=====================================================================  ==========================
URL                                                                    Client
=====================================================================  ==========================
``redis://[user:password@]host:port[/db]``                             one server
``rediss://…``                                                         one server over TLS
``redis+cluster://[user:password@]host:port,host:port[/]``             ``RedisCluster`` (any
                                                                       reachable node is a
                                                                       startup node)
``rediss+cluster://…``                                                 Redis Cluster over TLS
``redis+sentinel://[user:password@]host:port,host:port/master[/db]``   ``Sentinel(…).master_for``
``rediss+sentinel://…``                                                Sentinel, TLS to the data
                                                                       nodes and sentinels
=====================================================================  ==========================

Query options (``?name=value&…``), all optional:

- ``wait_replicas=N``: after every spec write, ``WAIT N`` on the same
  connection; a write that fewer than N replicas acknowledged in time is
  reported as ``StoreUnavailable`` (its fate is unknown). Default 1 for
  Sentinel URLs (a write the promoted replica did not get would be lost by a
  failover), 0 otherwise. Not available on a Redis Cluster (``WAIT`` has no
  key to route by).
- ``wait_timeout=MS``: how long ``WAIT`` blocks (default 1000).

The user name and password authenticate to the data nodes (and, for
Sentinel, to the sentinels too). ``RedisLocation.display`` is the URL with
the password masked: the only form that may reach an error message or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from fusebox.controlplane.store_errors import StoreUnavailable

__all__ = [
    "REDIS_SCHEMES",
    "UNAVAILABLE_ERRORS",
    "RedisClient",
    "RedisLocation",
    "ScriptCall",
    "Topology",
    "connect_redis",
    "is_redis_url",
    "parse_redis_url",
    "run_scripts",
]

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
ScriptCall: TypeAlias = "tuple[AsyncScript, Sequence[str], Sequence[str]]"


class Topology(enum.Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


_SCHEMES: Mapping[str, tuple[Topology, bool]] = {
    "redis": (Topology.STANDALONE, False),
    "rediss": (Topology.STANDALONE, True),
    "redis+cluster": (Topology.CLUSTER, False),
    "rediss+cluster": (Topology.CLUSTER, True),
    "redis+sentinel": (Topology.SENTINEL, False),
    "rediss+sentinel": (Topology.SENTINEL, True),
}
REDIS_SCHEMES: tuple[str, ...] = tuple(_SCHEMES)

_ACCEPTED = (
    "redis://HOST:PORT/DB, rediss://HOST:PORT/DB, redis+cluster://HOST:PORT,HOST:PORT, "
    "redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME[/DB] (rediss+… for TLS)"
)
_DEFAULT_PORT = 6379
_DEFAULT_SENTINEL_PORT = 26379
_DEFAULT_WAIT_TIMEOUT_MS = 1000
_OWN_OPTIONS = frozenset({"wait_replicas", "wait_timeout"})

# Errors that mean "Redis cannot serve right now" rather than a bug in a command.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MasterNotFoundError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # pointed at a replica (e.g. a demoted master)
    redis.exceptions.ClusterError,  # includes ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,  # a slot migrating
    redis.exceptions.RedisClusterException,  # e.g. a slot no reachable node covers
    OSError,
)


@dataclass(frozen=True, slots=True)
class RedisLocation:
    """A parsed Redis store URL: which topology, which nodes, which credentials."""

    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...]  # the server, startup nodes, or sentinels
    db: int = 0
    master_name: str = ""  # Sentinel only
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    wait_replicas: int = 0
    wait_timeout_ms: int = _DEFAULT_WAIT_TIMEOUT_MS
    url: str = field(default="", repr=False)  # the original, password included

    @contextlib.contextmanager
    def unavailable_as_store_error(self, store: str) -> Iterator[None]:
        """Redis being unreachable, as every store reports it: ``StoreUnavailable``
        naming the store ("breaker store", ...) and this location, never the password."""
        try:
            yield
        except UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable(f"redis {store} {self.display}: {error}") from error

    @property
    def display(self) -> str:
        """The location as it may be logged: never the password."""
        scheme = next(s for s, kind in _SCHEMES.items() if kind == (self.topology, self.tls))
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        user = f"{self.username or ''}:***@" if self.password is not None else ""
        if self.topology is Topology.SENTINEL:
            return f"{scheme}://{user}{hosts}/{self.master_name}/{self.db}"
        if self.topology is Topology.CLUSTER:
            return f"{scheme}://{user}{hosts}"
        return f"{scheme}://{user}{hosts}/{self.db}"


def is_redis_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis store of any topology (scheme check only)."""
    return bool(url) and (url or "").partition("://")[0].lower() in _SCHEMES


def parse_redis_url(url: str) -> RedisLocation:
    """Parses any of the documented URL forms; ValueError (password masked) otherwise.

    >>> parse_redis_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster").topology
    <Topology.SENTINEL: 'sentinel'>
    """
    scheme, separator, rest = url.partition("://")
    kind = _SCHEMES.get(scheme.lower()) if separator else None
    if kind is None:
        raise ValueError(f"{_mask(url)!r} is not a Redis URL; accepted: {_ACCEPTED}")
    topology, tls = kind
    authority, _, tail = rest.partition("/")
    tail, _, query = tail.partition("?")
    if "?" in authority:
        authority, _, query = authority.partition("?")
    username: str | None = None
    password: str | None = None
    if "@" in authority:
        credentials, _, authority = authority.rpartition("@")
        user_text, has_password, password_text = credentials.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if has_password else None
    shown = _mask(url)
    if not authority:
        raise ValueError(f"Redis URL {shown!r} needs a host, e.g. redis://HOST:6379/0")
    default_port = _DEFAULT_SENTINEL_PORT if topology is Topology.SENTINEL else _DEFAULT_PORT
    nodes = tuple(_host_port(part, default_port, shown) for part in authority.split(","))
    if topology is Topology.STANDALONE and len(nodes) != 1:
        raise ValueError(
            f"Redis URL {shown!r} names {len(nodes)} hosts; several hosts need "
            "redis+cluster:// or redis+sentinel://"
        )
    path = [segment for segment in tail.split("/") if segment]
    master_name = ""
    if topology is Topology.SENTINEL:
        if not path:
            raise ValueError(
                f"Redis URL {shown!r} needs the master name, "
                "e.g. redis+sentinel://HOST:26379,HOST:26379/mymaster"
            )
        master_name, path = unquote(path[0]), path[1:]
    if topology is not Topology.STANDALONE and (
        len(path) > 1 or (path and not path[0].isdigit())
    ):
        raise ValueError(f"Redis URL {shown!r}: the database must be a number, e.g. /0")
    db = int(path[0]) if path and path[0].isdigit() else 0  # plain URLs: redis-py decides
    if topology is Topology.CLUSTER and db != 0:
        raise ValueError(f"Redis URL {shown!r}: a Redis Cluster has database 0 only")
    options = dict(parse_qsl(query, keep_blank_values=True))
    wait_replicas = _int_option(
        options, "wait_replicas", 1 if topology is Topology.SENTINEL else 0, shown
    )
    wait_timeout_ms = _int_option(options, "wait_timeout", _DEFAULT_WAIT_TIMEOUT_MS, shown)
    # A plain URL may carry redis-py's own options (ssl_cert_reqs=…); passed on as before.
    unknown = sorted(set(options) - _OWN_OPTIONS)
    if unknown and topology is not Topology.STANDALONE:
        raise ValueError(
            f"Redis URL {shown!r}: unknown option(s) {', '.join(unknown)}; "
            "accepted: wait_replicas, wait_timeout"
        )
    if topology is Topology.CLUSTER and wait_replicas:
        raise ValueError(f"Redis URL {shown!r}: wait_replicas is not available on a Redis Cluster")
    return RedisLocation(
        topology=topology, tls=tls, nodes=nodes, db=db, master_name=master_name,
        username=username, password=password, wait_replicas=wait_replicas,
        wait_timeout_ms=wait_timeout_ms, url=url,
    )


def connect_redis(location: RedisLocation, *, socket_timeout: float) -> RedisClient:
    """A client for ``location`` with decoded responses and a short retry budget; no I/O.

    The retry budget is short on purpose: a health check should answer
    "unavailable" in well under a second, not after redis-py's default backoff.
    """
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), 2),
        "username": location.username,
        "password": location.password,
    }
    if location.topology is Topology.STANDALONE:
        # from_url keeps every plain redis:// behaviour (and its TLS query options).
        client: aioredis.Redis = aioredis.Redis.from_url(
            _without_own_options(location.url),
            **{k: v for k, v in common.items() if k not in ("username", "password")},
        )
        return client
    if location.topology is Topology.CLUSTER:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in location.nodes],
            ssl=location.tls,
            **common,
        )
    sentinel_kwargs = {
        "socket_connect_timeout": 2.0,
        "socket_timeout": 2.0,
        "ssl": location.tls,
        "username": location.username,
        "password": location.password,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(location.nodes), sentinel_kwargs=sentinel_kwargs, ssl=location.tls, **common
    )
    master: aioredis.Redis = sentinel.master_for(location.master_name, db=location.db)
    return master


async def run_scripts(client: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    """Runs many script calls, in order per hash slot; their replies in call order.

    On a single server: one non-transactional pipeline of EVALSHA calls, with
    no round trip before it (redis-py's script pipelines ask SCRIPT EXISTS
    first, every time); calls Redis answers NOSCRIPT (a restart or SCRIPT
    FLUSH emptied its cache) load their script and run again, in order: one
    ``run_scripts`` holds one script, so they are all of its calls, none of
    which ran. redis-py refuses EVALSHA in a cluster pipeline, so on a
    Redis Cluster the calls are grouped by the slot of their first key: each
    group runs one call after the other (calls on one breaker keep their
    order), the groups run concurrently. Every call runs exactly once; the
    first error is raised after all of them finished.
    """
    if not calls:
        return []
    if not isinstance(client, RedisCluster):
        replies: list[Any] = await _evalsha_pipeline(client, calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
                script.sha = await client.script_load(script.script)
            again = await _evalsha_pipeline(client, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    by_slot: dict[int, list[int]] = {}
    for i, (_, keys, _) in enumerate(calls):
        by_slot.setdefault(client.keyslot(keys[0]) if keys else -1, []).append(i)
    replies = [None] * len(calls)

    async def run_in_order(indexes: list[int]) -> None:
        for i in indexes:
            script, keys, args = calls[i]
            replies[i] = await script(keys, args)  # EVALSHA, loading the script on NOSCRIPT

    outcomes = await asyncio.gather(
        *(run_in_order(indexes) for indexes in by_slot.values()), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return replies


async def _evalsha_pipeline(client: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    """One round trip of EVALSHA calls; each reply, or the error Redis answered."""
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


def _without_own_options(url: str) -> str:
    """A plain URL minus the options only Fusebox reads (redis-py refuses unknown ones)."""
    base, separator, query = url.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _OWN_OPTIONS]
    return f"{base}?{urlencode(kept)}" if separator and kept else base


def _host_port(text: str, default_port: int, shown: str) -> tuple[str, int]:
    if text.startswith("["):  # an IPv6 literal: [::1]:6379
        host, _, after = text[1:].partition("]")
        port = after[1:] if after.startswith(":") else ("" if after else str(default_port))
    else:
        host, separator, port = text.partition(":")
        port = port if separator else str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Redis URL {shown!r}: {text!r} is not HOST:PORT")
    return host, int(port)


def _int_option(options: Mapping[str, str], name: str, default: int, shown: str) -> int:
    text = options.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ValueError(f"Redis URL {shown!r}: {name} must be a whole number, got {text!r}")
    return int(text)


def _mask(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    credentials, _, hosts = authority.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    masked = f"{user}:***" if has_password else user
    return f"{scheme}{separator}{masked}@{hosts}{slash}{tail}"

