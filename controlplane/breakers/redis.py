"""The Redis breaker store: cluster-wide breaker state shared by every server replica.

Breakers are spread over ``partitions`` partitions by a stable hash (CRC-32)
of ``BreakerKey.encode()`` (``<id>`` below); the partition is the hash tag of
every key, so each script touches one slot (Redis Cluster ready)::

    fusebox:{bp<N>}:state:<id>     hash: state, counts, generation, policy, override
    fusebox:{bp<N>}:leases:<id>    hash: lease id -> expiry (ms)
    fusebox:{bp<N>}:recent:<id>    list: the breaker's last events (JSON), newest first
    fusebox:{bp<N>}:qfail:<id>     zset (score 0): quorum policies, instances failing in the window
    fusebox:{bp<N>}:qseen:<id>     set: quorum policies, instances reporting in the window
    fusebox:{bp<N>}:events         stream: the partition's transitions (XADD MAXLEN ~)
    fusebox:{bp<N>}:deadlines      zset: open timeouts, override and lease expiries
    fusebox:{bp<N>}:index          set: the partition's encoded breaker keys
    fusebox:{bp<N>}:targetov       hash: target overrides (a copy in every partition)

Every state change happens inside one Lua script (``breaker_*.lua``, each with
``breaker_common.lua`` prepended: the state machine), using Redis server time.
The details are in ``docs/breaker-state.md``. Every method raises
``StoreUnavailable`` (never a redis-py exception) when Redis cannot serve.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from fusebox.agent.breaker import BreakerOverride, BreakerState, Counts, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import BreakerQuorum, CircuitBreakerPolicy
from fusebox.controlplane.breakers.model import (
    FAILING_INSTANCES_SHOWN,
    BreakerEvent,
    BreakerNotFound,
    BreakerSnapshot,
    BreakerTarget,
    LeaseGrant,
    OutcomeBatch,
    OverrideInfo,
    TargetOverride,
)
from fusebox.controlplane.breakers.trip_lua import compile_trip_to_lua
from fusebox.controlplane.redis_client import (
    RedisClient,
    ScriptCall,
    connect_redis,
    parse_redis_url,
    run_scripts,
)

__all__ = ["RedisBreakerStore"]


def _script(name: str) -> str:
    package = resources.files("fusebox.controlplane.breakers")
    common = package.joinpath("breaker_common.lua").read_text()
    return common + "\n" + package.joinpath(name).read_text()


_APPLY, _LEASE, _ADVANCE, _OVERRIDE, _TARGET = (
    _script(f"breaker_{name}.lua")
    for name in ("apply", "lease", "advance", "override", "target")
)

_ADVANCE_LIMIT = 1000  # deadlines handled per partition per call
_EMPTY_STREAM = "0-0"


@dataclass(frozen=True, slots=True)
class _Keys:
    state: str
    leases: str
    events: str
    deadlines: str
    recent: str
    quorum_failing: str  # touched for quorum policies only
    quorum_reporting: str
    index: str
    target_overrides: str  # the partition's copy of every target override

    @property
    def script_keys(self) -> list[str]:
        return [
            self.state, self.leases, self.events, self.deadlines, self.recent,
            self.quorum_failing, self.quorum_reporting,
        ]

    @property
    def creating_keys(self) -> list[str]:
        """``script_keys`` and the two keys a script that may create the breaker needs."""
        return [*self.script_keys, self.index, self.target_overrides]


class RedisBreakerStore:
    """A ``BreakerStore`` in Redis (any URL ``fusebox.controlplane.redis_client`` takes).

    Creating it does no I/O. ``clock`` (unix seconds) is for tests only: when
    given, every script uses it instead of Redis server time.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "fusebox",
        partitions: int = 16,
        events_maxlen: int = 10_000,
        clock: Callable[[], float] | None = None,
        max_block_seconds: float = 5.0,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self._location = parse_redis_url(url)
        self._client: RedisClient = connect_redis(
            self._location, socket_timeout=max_block_seconds + 3.0  # longer than an XREAD BLOCK
        )
        self._prefix = key_prefix
        self._partitions = partitions
        self._maxlen = str(events_maxlen)
        self._clock = clock
        self._max_block = max_block_seconds
        self._apply_script = self._client.register_script(_APPLY)
        self._lease_script = self._client.register_script(_LEASE)
        self._advance_script = self._client.register_script(_ADVANCE)
        self._override_script = self._client.register_script(_OVERRIDE)
        self._target_script = self._client.register_script(_TARGET)

    # -- layout ----------------------------------------------------------------

    def partition_of(self, key: BreakerKey) -> int:
        """The partition (and hash tag ``{bp<N>}``) of a breaker: stable across processes."""
        return zlib.crc32(key.encode().encode()) % self._partitions

    def _partition_prefix(self, partition: int) -> str:
        return f"{self._prefix}:{{bp{partition}}}:"

    def _keys(self, key: BreakerKey) -> _Keys:
        prefix = self._partition_prefix(self.partition_of(key))
        encoded = key.encode()
        return _Keys(
            state=f"{prefix}state:{encoded}",
            leases=f"{prefix}leases:{encoded}",
            events=f"{prefix}events",
            deadlines=f"{prefix}deadlines",
            recent=f"{prefix}recent:{encoded}",
            quorum_failing=f"{prefix}qfail:{encoded}",
            quorum_reporting=f"{prefix}qseen:{encoded}",
            index=f"{prefix}index",
            target_overrides=f"{prefix}targetov",
        )

    def _now_argument(self) -> str:
        return "" if self._clock is None else str(round(self._clock() * 1000))

    def _now_ms(self) -> int:
        return round((self._clock or time.time)() * 1000)

    # -- reports and leases ------------------------------------------------------

    async def apply(self, batches: Sequence[OutcomeBatch]) -> list[BreakerEvent]:
        if not batches:
            return []
        for batch in batches:
            batch.check()
        now = self._now_argument()
        calls: builtins.list[ScriptCall] = []
        for batch in batches:
            keys = self._keys(batch.key)
            policy = batch.policy
            args = [
                now,
                self._maxlen,
                batch.key.encode(),
                *_policy_arguments(policy),
                compile_trip_to_lua(policy.trip),
                batch.instance_id,
                batch.lease_id,
                *_quorum_arguments(policy),
                str(len(batch.runs)),
                *(str(run) for run in batch.runs),
                *batch.run_instances,
            ]
            calls.append((self._apply_script, keys.creating_keys, args))
        with self._translate_errors():
            replies = await run_scripts(self._client, calls)
        return [_event(reply) for answer in replies for reply in answer]

    async def acquire_lease(
        self, key: BreakerKey, policy: CircuitBreakerPolicy, instance_id: str, ttl: float
    ) -> LeaseGrant:
        args = [self._now_argument(), self._maxlen, uuid.uuid4().hex, str(max(1, _ms(ttl)))]
        with self._translate_errors():
            reply = await self._lease_script(self._keys(key).script_keys, args)
        granted, lease_id, expires_ms, state, generation = reply
        return LeaseGrant(
            granted=int(granted) == 1,
            lease_id=lease_id,
            expires_at=int(expires_ms) / 1000,
            state=BreakerState(state),
            generation=int(generation),
        )

    # -- time ----------------------------------------------------------------------

    async def advance(self) -> list[BreakerEvent]:
        now = self._now_argument()
        calls: builtins.list[ScriptCall] = []
        for partition in range(self._partitions):
            prefix = self._partition_prefix(partition)
            calls.append((
                self._advance_script,
                [f"{prefix}deadlines", f"{prefix}events"],
                [now, self._maxlen, prefix, str(_ADVANCE_LIMIT)],
            ))
        with self._translate_errors():
            replies = await run_scripts(self._client, calls)
        return [_event(reply) for answer in replies for reply in answer]

    # -- operations ----------------------------------------------------------------

    async def get(self, key: BreakerKey) -> BreakerSnapshot | None:
        keys = self._keys(key)
        with self._translate_errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.state)
                pipe.hgetall(keys.leases)
                _read_quorum_sets(pipe, keys)  # absent keys unless a quorum policy: O(1)
                state, leases, *sets = await pipe.execute()
        if not state:
            return None
        return _snapshot(key, state, leases, self._now_ms(), _QuorumSets(*sets))

    async def list(
        self, *, namespace: str = "", target: str = "", state: BreakerState | None = None
    ) -> builtins.list[BreakerSnapshot]:
        with self._translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                for partition in range(self._partitions):
                    pipe.smembers(f"{self._partition_prefix(partition)}index")
                members = await pipe.execute()
            wanted = sorted(
                (
                    key
                    for encoded in set().union(*members)
                    if (key := BreakerKey.decode(encoded))
                    and (not namespace or key.namespace == namespace)
                    and (not target or key.target == target)
                ),
                key=BreakerKey.encode,
            )
            if not wanted:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for key in wanted:
                    redis_keys = self._keys(key)
                    pipe.hgetall(redis_keys.state)
                    pipe.hgetall(redis_keys.leases)
                values = await pipe.execute()
            found = [
                (key, values[2 * i], values[2 * i + 1])
                for i, key in enumerate(wanted)
                if values[2 * i]
            ]
            # Only quorum breakers have instance sets: a second round for those alone.
            quorum_keys = [key for key, fields, _ in found if "qmin" in fields]
            sets: dict[BreakerKey, _QuorumSets] = {}
            if quorum_keys:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in quorum_keys:
                        _read_quorum_sets(pipe, self._keys(key))
                    replies = await pipe.execute()
                for i, key in enumerate(quorum_keys):
                    sets[key] = _QuorumSets(*replies[3 * i : 3 * i + 3])
        now = self._now_ms()
        snapshots = [
            _snapshot(key, fields, leases, now, sets.get(key, _NO_SETS))
            for key, fields, leases in found
        ]
        return [s for s in snapshots if state is None or s.state is state]

    async def set_override(
        self,
        key: BreakerKey,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
        policy: CircuitBreakerPolicy | None = None,
    ) -> BreakerSnapshot:
        action = "clear" if override is None else _STORED_OVERRIDE[override]
        if not await self._run_override(key, action, reason, _ttl_ms(ttl), set_by, policy):
            raise BreakerNotFound(key)
        return await self._get_existing(key)

    async def reset(self, key: BreakerKey, *, reason: str, set_by: str) -> BreakerSnapshot:
        if not await self._run_override(key, "reset", reason, "", set_by):
            raise BreakerNotFound(key)
        return await self._get_existing(key)

    async def adopt_target_override(
        self, key: BreakerKey, policy: CircuitBreakerPolicy
    ) -> BreakerSnapshot | None:
        if not await self._run_override(key, "adopt", "", "", "", policy):
            return None
        return await self.get(key)

    async def _run_override(
        self, key: BreakerKey, action: str, reason: str, ttl_ms: str, set_by: str,
        policy: CircuitBreakerPolicy | None = None,
    ) -> bool:
        """Run ``breaker_override.lua``; False when it found no breaker (nothing done)."""
        policy_args = (
            [*_policy_arguments(policy), *_quorum_arguments(policy)] if policy else [""] * 9
        )
        args = [self._now_argument(), self._maxlen, action, reason, ttl_ms, set_by,
                _detail(reason, set_by), key.encode(), *policy_args]
        with self._translate_errors():
            reply = await self._override_script(self._keys(key).creating_keys, args)
        return bool(reply[0] != "not_found")

    async def set_target_override(
        self,
        target: BreakerTarget,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
    ) -> builtins.list[BreakerSnapshot]:
        action = "clear" if override is None else _STORED_OVERRIDE[override]
        now, ttl_ms, detail = self._now_argument(), _ttl_ms(ttl), _detail(reason, set_by)
        calls: builtins.list[ScriptCall] = []
        for partition in range(self._partitions):
            prefix = self._partition_prefix(partition)
            calls.append((
                self._target_script,
                [f"{prefix}targetov", f"{prefix}index", f"{prefix}events", f"{prefix}deadlines"],
                [now, self._maxlen, prefix, target.encode(), action, reason, ttl_ms, set_by,
                 detail],
            ))
        with self._translate_errors():
            await run_scripts(self._client, calls)
        found = await self.list(namespace=target.namespace, target=target.target)
        return [s for s in found if target.covers(s.key)]

    async def target_overrides(
        self, *, namespace: str = "", target: str = ""
    ) -> builtins.list[TargetOverride]:
        with self._translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                for partition in range(self._partitions):
                    pipe.hgetall(f"{self._partition_prefix(partition)}targetov")
                copies = await pipe.execute()
        now_ms = self._now_ms()
        found: dict[str, TargetOverride] = {}
        for copy in copies:  # every partition holds the same; the first one read wins
            for encoded, raw in copy.items():
                if encoded in found:
                    continue
                rule = _target_override(encoded, json.loads(raw), now_ms)
                if rule is None:
                    continue
                if (namespace and rule.target.namespace != namespace) or (
                    target and rule.target.target != target
                ):
                    continue
                found[encoded] = rule
        return [found[encoded] for encoded in sorted(found)]

    async def _get_existing(self, key: BreakerKey) -> BreakerSnapshot:
        snapshot = await self.get(key)
        if snapshot is None:
            raise BreakerNotFound(key)
        return snapshot

    async def recent_events(self, key: BreakerKey, count: int = 20) -> builtins.list[BreakerEvent]:
        if count <= 0:
            return []
        with self._translate_errors():
            records = await self._client.lrange(self._keys(key).recent, 0, count - 1)
        return [_event(json.loads(record)) for record in reversed(records)]

    async def read_events(
        self, after: str, *, block: float = 0.0, count: int = 1000
    ) -> tuple[str, builtins.list[BreakerEvent]]:
        streams = [f"{self._partition_prefix(p)}events" for p in range(self._partitions)]
        with self._translate_errors():
            positions = await self._positions(after, streams)
            block_ms = round(min(block, self._max_block) * 1000) if block > 0 else None
            response: Any
            if isinstance(self._client, RedisCluster):
                response = await self._read_each_partition(streams, positions, count, block_ms)
            else:
                response = await self._client.xread(
                    dict(zip(streams, positions, strict=True)), count=count, block=block_ms
                )
        index = {stream: i for i, stream in enumerate(streams)}
        entries: list[tuple[tuple[int, int], int, BreakerEvent]] = []
        for stream, stream_entries in _streams(response):
            for entry_id, fields in stream_entries:
                entries.append((_order(entry_id), index[stream],
                                _event_from_fields(entry_id, fields)))
        entries.sort(key=lambda entry: entry[0])
        # Each event's position: every partition at its last entry up to this event.
        # A partition's entries come in order, so nothing after that point is skipped.
        events = []
        for _, partition, event in entries:
            positions[partition] = event.stream_id
            events.append(dataclasses.replace(event, position=",".join(positions)))
        return ",".join(positions), events

    async def resumable(self, position: str) -> bool:
        streams = [f"{self._partition_prefix(p)}events" for p in range(self._partitions)]
        positions = ([_EMPTY_STREAM] * len(streams) if position == "0"
                     else position.split(","))
        if len(positions) != len(streams) or not all(_valid_stream_id(p) for p in positions):
            return False
        with self._translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xinfo_stream(stream)
                infos = await pipe.execute(raise_on_error=False)
        for stream_position, info in zip(positions, infos, strict=True):
            if isinstance(info, redis.exceptions.ResponseError):  # no such stream (yet)
                info = {}
            elif isinstance(info, BaseException):
                raise info
            if not _partition_resumable(_order(stream_position), info):
                return False
        return True

    async def _read_each_partition(
        self,
        streams: builtins.list[str],
        positions: builtins.list[str],
        count: int,
        block_ms: int | None,
    ) -> builtins.list[tuple[str, Any]]:
        """Redis Cluster: one XREAD per partition stream, as (stream, entries) pairs.

        Each partition is its own hash slot and a multi-key command must stay
        in one slot, so the single XREAD over every stream becomes one per
        partition. First a non-blocking round in one pipeline (spread over the
        nodes); when it finds nothing and the caller wants to wait, a blocking
        XREAD per partition at once: the first to answer wins and the others
        are cancelled (redis-py drops a connection cancelled mid-read; XREAD
        consumes nothing, so no event is lost).
        """
        assert isinstance(self._client, RedisCluster)
        async with self._client.pipeline(transaction=False) as pipe:
            for stream, position in zip(streams, positions, strict=True):
                pipe.xread({stream: position}, count=count)
            replies = await pipe.execute()
        found = [pair for reply in replies for pair in _streams(reply)]
        if found or block_ms is None:
            return found
        client = self._client
        readers = [
            asyncio.ensure_future(client.xread({stream: position}, count=count, block=block_ms))
            for stream, position in zip(streams, positions, strict=True)
        ]
        try:
            await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        for reader in readers:
            if reader.cancelled():
                continue
            error = reader.exception()
            if error is not None:
                raise error
            found.extend(_streams(reader.result()))
        return found

    async def _positions(self, after: str, streams: builtins.list[str]) -> builtins.list[str]:
        if after == "0":
            return [_EMPTY_STREAM] * len(streams)
        if after == "":
            async with self._client.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xrevrange(stream, "+", "-", count=1)
                newest = await pipe.execute()
            return [entries[0][0] if entries else _EMPTY_STREAM for entries in newest]
        positions = after.split(",")
        if len(positions) != len(streams) or not all(_valid_stream_id(p) for p in positions):
            raise ValueError(
                f"invalid event position {after!r}: expected '', '0' or a position returned "
                f"by read_events of a store with {len(streams)} partitions"
            )
        return positions

    async def ping(self) -> None:
        with self._translate_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        with self._location.unavailable_as_store_error("breaker store"):
            yield


# ---- decoding ------------------------------------------------------------------

#: An override as the breaker hash (``ov``) and the Lua scripts spell it: the
#: spelling of every Redis store since the first release, kept so that breakers
#: already stored stay readable. Users see ``BreakerOverride``'s values
#: (``force-open``); this table is the one place the stored words appear in Python.
_STORED_OVERRIDE: Mapping[BreakerOverride, str] = {
    BreakerOverride.FORCE_OPEN: "force_open",
    BreakerOverride.FORCE_CLOSED: "force_closed",
    BreakerOverride.DISABLED: "disabled",
}
_OVERRIDE_FROM_STORED = {stored: override for override, stored in _STORED_OVERRIDE.items()}


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _ttl_ms(ttl: float | None) -> str:
    return str(max(1, _ms(ttl))) if ttl else ""


def _detail(reason: str, set_by: str) -> str:
    """An override event's detail (the embedded store writes the same)."""
    return f"{reason} (by {set_by})" if set_by else reason


def _policy_arguments(policy: CircuitBreakerPolicy) -> builtins.list[str]:
    """name, max_requests, interval and timeout in ms, then as seconds (text), trip."""
    return [
        policy.name,
        str(policy.max_requests),
        str(_ms(policy.interval)),
        str(_ms(policy.timeout)),
        repr(float(policy.interval)),
        repr(float(policy.timeout)),
        policy.trip,
    ]


def _quorum_arguments(policy: CircuitBreakerPolicy) -> builtins.list[str]:
    """min instances and min share (text); both '' without a quorum."""
    quorum = policy.quorum
    if quorum is None:
        return ["", ""]
    return [str(quorum.min_instances), repr(float(quorum.min_share))]


def _target_override(
    encoded: str, stored: dict[str, str], now_ms: int
) -> TargetOverride | None:
    """A partition's copy of a target override, or None once it has expired."""
    expires_ms = int(stored["exp"])
    if 0 <= expires_ms < now_ms:
        return None
    info = OverrideInfo(
        _OVERRIDE_FROM_STORED[stored["ov"]], stored["reason"],
        _optional_seconds(str(expires_ms)), stored["by"],
    )
    return TargetOverride(BreakerTarget.decode(encoded), info, stored["detail"])


def _optional_seconds(ms: str) -> float | None:
    return None if ms in ("", "-1") else int(ms) / 1000


def _event(reply: builtins.list[Any]) -> BreakerEvent:
    """An event as the scripts return it (and keep it in the recent list)."""
    stream_id, encoded, from_state, to_state, generation, cause, at, instance, detail, until = (
        reply
    )
    return BreakerEvent(
        key=BreakerKey.decode(encoded),
        from_state=BreakerState(from_state),
        to_state=BreakerState(to_state),
        generation=int(generation),
        cause=TransitionCause(cause),
        at=int(at) / 1000,
        instance_id=instance,
        detail=detail,
        open_until=_optional_seconds(str(until)),
        stream_id=stream_id,
    )


def _event_from_fields(entry_id: str, f: dict[str, str]) -> BreakerEvent:
    return _event(
        [entry_id, f["id"], f["from"], f["to"], f["gen"], f["cause"], f["at"], f["inst"],
         f["detail"], f["open_until"]]
    )


@dataclass(frozen=True, slots=True)
class _QuorumSets:
    """What ``_read_quorum_sets`` read: the first failing names and both sizes."""

    failing: builtins.list[str]
    failing_count: int
    reporting_count: int


_NO_SETS = _QuorumSets([], 0, 0)


def _read_quorum_sets(pipe: Any, keys: _Keys) -> None:
    """Queue the three reads of a breaker's instance sets (``_QuorumSets`` order)."""
    pipe.zrange(keys.quorum_failing, 0, FAILING_INSTANCES_SHOWN - 1)  # sorted: all scores 0
    pipe.zcard(keys.quorum_failing)
    pipe.scard(keys.quorum_reporting)


def _quorum(state: dict[str, str]) -> BreakerQuorum | None:
    if "qmin" not in state:
        return None
    return BreakerQuorum(min_instances=int(state["qmin"]), min_share=float(state["qshare"]))


def _effective(state: dict[str, str]) -> BreakerState:
    override = state["ov"]
    if override == _STORED_OVERRIDE[BreakerOverride.FORCE_OPEN]:
        return BreakerState.OPEN
    if override:
        return BreakerState.CLOSED
    return BreakerState(state["state"])


def _snapshot(
    key: BreakerKey,
    state: dict[str, str],
    leases: dict[str, str],
    now_ms: int,
    sets: _QuorumSets = _NO_SETS,
) -> BreakerSnapshot:
    machine_state = BreakerState(state["state"])
    expiry = int(state["expiry"])
    counts = Counts(
        int(state["req"]), int(state["ts"]), int(state["tf"]), int(state["cs"]), int(state["cf"])
    )
    if machine_state is BreakerState.CLOSED and 0 <= expiry < now_ms:
        counts = Counts()  # the window has rolled over; the next report starts a new one
        sets = _NO_SETS
    effective = _effective(state)
    override = None
    if state["ov"]:
        override = OverrideInfo(
            _OVERRIDE_FROM_STORED[state["ov"]],
            state["ov_reason"],
            _optional_seconds(state["ov_exp"]),
            state["ov_by"],
        )
    open_by_machine = effective is BreakerState.OPEN and machine_state is BreakerState.OPEN
    return BreakerSnapshot(
        key=key,
        policy=CircuitBreakerPolicy(
            name=state["name"],
            max_requests=int(state["max_requests"]),
            interval=float(state["interval_s"]),
            timeout=float(state["timeout_s"]),
            trip=state["trip"],
            quorum=_quorum(state),
        ),
        state=effective,
        generation=int(state["gen"]),
        counts=counts,
        open_until=expiry / 1000 if open_by_machine and expiry >= 0 else None,
        override=override,
        active_leases=sum(1 for at in leases.values() if int(at) >= now_ms),
        updated_at=int(state["updated"]) / 1000,
        failing_instances=tuple(sets.failing),
        failing_instance_count=int(sets.failing_count),
        reporting_instance_count=int(sets.reporting_count),
    )


def _streams(response: Any) -> Iterator[tuple[str, Any]]:
    """(stream, entries) pairs of an XREAD reply, RESP2 or RESP3 shaped."""
    pairs = response.items() if isinstance(response, dict) else response or ()
    for stream, entries in pairs:
        yield str(stream), entries


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, sequence = stream_id.partition("-")
    return int(ms), int(sequence or 0)


def _partition_resumable(position: tuple[int, int], info: dict[str, Any]) -> bool:
    """Whether a partition's stream (its XINFO STREAM reply; {} when it does not
    exist) still holds every entry after ``position``."""
    if not info:
        return position == (0, 0)  # none was ever read here, none was lost
    if position > _order(str(info["last-generated-id"])):
        return False  # beyond this stream's end: another stream's position
    first_entry = info.get("first-entry")
    if first_entry and position >= _order(str(first_entry[0])):
        return True  # the entry is held, and so is every one after it
    if not first_entry:  # empty: only a reader already at its end lost nothing
        return position == _order(str(info["last-generated-id"]))
    # Before the first entry held: fine only for a reader that saw the stream
    # empty, when nothing was ever trimmed (Redis 7 counts what was added). Else
    # trimmed entries, or a stream flushed and created again, lie in between.
    never_trimmed = info.get("entries-added") == info.get("length")
    return position == (0, 0) and never_trimmed


def _valid_stream_id(text: str) -> bool:
    ms, separator, sequence = text.partition("-")
    return ms.isdigit() and (not separator or sequence.isdigit())
