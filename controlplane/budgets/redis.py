"""The Redis budget store: fleet budget tables shared by every server replica.

Each budget's keys share one hash tag, so its script runs on one shard of a
Redis Cluster (``<id>`` is ``store.encode_key``)::

    fusebox:{budget:<id>}:instances   hash: "i:<instance>" rows, "gen", "policy", "at"
    fusebox:{budget:<id>}:totals      hash: the per-second counters (totals.py's ring)
    fusebox:budgets                   set: every <id> (for ``list``; its own slot)

A refresh is one ``budget_allocate.lua`` call per budget (EVALSHA, loaded
again after a Redis restart; pipelined over budgets), using Redis ``TIME``:
the script mirrors ``allocation.refresh_rows``. Both hashes expire when no
replica refreshed the budget for ``KEY_TTL`` seconds. Every method raises
``StoreUnavailable`` (never a redis-py exception) when Redis cannot serve.
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources

from fusebox.agent.budget import BudgetKey
from fusebox.controlplane.budgets import totals
from fusebox.controlplane.budgets.allocation import (
    DEFAULT_PARAMS,
    AllocationParams,
    Holding,
    demand_now,
)
from fusebox.controlplane.budgets.store import (
    Allocation,
    BudgetRequest,
    BudgetView,
    Grant,
    InstanceView,
    decode_key,
    encode_key,
    fleet_rate,
    policy_from_json,
    policy_to_json,
)
from fusebox.controlplane.redis_client import (
    RedisClient,
    ScriptCall,
    connect_redis,
    parse_redis_url,
    run_scripts,
)

__all__ = ["KEY_TTL", "RedisBudgetStore", "decode_row"]

_ALLOCATE = resources.files("fusebox.controlplane.budgets").joinpath(
    "budget_allocate.lua").read_text()
#: Seconds a budget no replica refreshes keeps its table (then it is gone from `list`).
KEY_TTL = 600
#: Seconds between two SADDs of one budget to the index by one replica.
_INDEX_EVERY = 30.0


def decode_row(text: str) -> Holding:
    """A row as ``budget_allocate.lua`` writes it."""
    words = text.split()
    outstanding = [(int(words[i]), float(words[i + 1])) for i in range(7, len(words) - 1, 2)]
    return Holding(float(words[0]), float(words[1]), float(words[2]), float(words[3]),
                   float(words[4]), int(words[5]), int(words[6]), outstanding)


class RedisBudgetStore:
    """A ``BudgetStore`` in Redis (any URL ``fusebox.controlplane.redis_client`` takes).

    Creating it does no I/O. ``clock`` (unix seconds) is for tests only: when
    given, the script uses it instead of Redis server time.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "fusebox",
        params: AllocationParams = DEFAULT_PARAMS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._location = parse_redis_url(url)
        self._client: RedisClient = connect_redis(self._location, socket_timeout=5.0)
        self._prefix = key_prefix
        self.params = params
        self._clock = clock
        self._script = self._client.register_script(_ALLOCATE)
        self._indexed: dict[BudgetKey, float] = {}

    def _keys(self, key: BudgetKey) -> tuple[str, str]:
        tag = f"{self._prefix}:{{budget:{encode_key(key)}}}"
        return f"{tag}:instances", f"{tag}:totals"

    @property
    def _index(self) -> str:
        return f"{self._prefix}:budgets"

    async def allocate(self, requests: Sequence[BudgetRequest]) -> builtins.list[Allocation]:
        if not requests:
            return []
        p = self.params
        now = "" if self._clock is None else repr(self._clock())
        calls: builtins.list[ScriptCall] = []
        for request in requests:
            args = [now, repr(fleet_rate(request.policy)), repr(p.lease), repr(p.min_share),
                    repr(p.headroom), repr(p.tau), repr(p.idle_after), repr(p.hysteresis),
                    policy_to_json(request.policy), str(KEY_TTL), str(totals.SLOTS),
                    repr(p.demand_hold)]
            args += [str(len(request.holders)), *request.holders]
            args.append(str(len(request.usage)))
            for instance, usage in request.usage.items():
                args += [instance, repr(usage.demand), str(usage.admitted), str(usage.refused),
                         str(usage.first_attempts)]
            args.append(str(len(request.acks)))
            for instance, generation in request.acks.items():
                args += [instance, str(generation)]
            args += [str(len(request.departed)), *request.departed]
            calls.append((self._script, list(self._keys(request.key)), args))
        with self._translate_errors():
            replies = await run_scripts(self._client, calls)
            await self._index_keys([r.key for r in requests])
        return [self._allocation(r.key, reply) for r, reply in zip(requests, replies, strict=True)]

    def _allocation(self, key: BudgetKey, reply: Sequence[str]) -> Allocation:
        generation, size, free, at = int(reply[0]), int(reply[1]), float(reply[2]), float(reply[3])
        shares = {reply[i]: Grant(float(reply[i + 1]), int(reply[i + 2]))
                  for i in range(4, len(reply), 3)}
        return Allocation(key, generation, shares, size, free, self.params.lease, at)

    async def _index_keys(self, keys: Sequence[BudgetKey]) -> None:
        """Name the budgets in the index (``list``); each at most every ``_INDEX_EVERY``."""
        now = time.monotonic()
        due = [k for k in keys if now - self._indexed.get(k, -_INDEX_EVERY) >= _INDEX_EVERY]
        if due:
            await self._client.sadd(self._index, *(encode_key(k) for k in due))
            for key in due:
                self._indexed[key] = now

    async def describe(self, key: BudgetKey) -> BudgetView | None:
        instances, ring = self._keys(key)
        with self._translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(instances)
                pipe.hgetall(ring)
                table, counts = await pipe.execute()
            now = await self._now()
        return _view(key, table, counts, now, self.params) if table else None

    async def list(self, namespace: str = "") -> builtins.list[BudgetView]:
        with self._translate_errors():
            members = await self._client.smembers(self._index)
            wanted = sorted(
                (key for encoded in members if (key := decode_key(str(encoded))) is not None
                 and (not namespace or key.namespace == namespace)),
                key=str,
            )
            if not wanted:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for key in wanted:
                    instances, ring = self._keys(key)
                    pipe.hgetall(instances)
                    pipe.hgetall(ring)
                values = await pipe.execute()
            now = await self._now()
            gone = [encode_key(k) for i, k in enumerate(wanted) if not values[2 * i]]
            if gone:  # expired: no replica refreshes them any more
                await self._client.srem(self._index, *gone)
        return [_view(key, values[2 * i], values[2 * i + 1], now, self.params)
                for i, key in enumerate(wanted) if values[2 * i]]

    async def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        seconds, micros = await self._client.time()
        return float(seconds) + float(micros) / 1e6

    async def ping(self) -> None:
        with self._translate_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        with self._location.unavailable_as_store_error("budget store"):
            yield


def _view(key: BudgetKey, table: Mapping[str, str], ring: Mapping[str, str], now: float,
          params: AllocationParams) -> BudgetView:
    rows = {field[2:]: decode_row(value) for field, value in table.items()
            if field.startswith("i:")}
    instances = tuple(
        InstanceView(i, row.granted, row.held, row.generation, row.acked,
                     demand_now(row, now, params), row.seen,
                     row.left if row.left > 0 else None, row.demand_at > 0)
        for i, row in sorted(rows.items())
    )
    admitted, refused, first = totals.rates(ring, now)
    policy = policy_from_json(table.get("policy", ""))
    live = sum(1 for view in instances if view.left_at is None)
    free = 1.0 - sum(view.held for view in instances)
    return BudgetView(key, policy, int(table.get("gen", "0")), live, max(0.0, free),
                      params.lease, admitted, refused, first, instances,
                      float(table.get("at", "0")))
