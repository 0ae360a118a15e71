"""The Redis spec store: specs and revision history shared by every server replica.

Every key starts with ``<prefix>:{specs}:``; the hash tag puts all of them in
one slot, so a multi-spec ``apply`` is ONE Lua script (``redis_apply.lua``)
that checks every expected revision and the no-op digest rule, then writes the
live values, the history, the store revision and a changes-stream entry, all
atomically. Specs are few and small, so one slot is no bottleneck (breaker
state, later, uses one hash tag per breaker). The key layout is in
``docs/stores.md``.

Every method raises ``StoreUnavailable`` (never a redis-py exception) when
Redis cannot be reached; ``changes()`` instead waits for Redis to come back and
resumes, because it is a subscription, not a request.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

from redis.asyncio.cluster import RedisCluster

from fusebox.controlplane.redis_client import (
    UNAVAILABLE_ERRORS,
    RedisClient,
    connect_redis,
    parse_redis_url,
)
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
from fusebox.controlplane.store_errors import StoreUnavailable

__all__ = ["RedisSpecStore"]

_APPLY_SCRIPT = (
    resources.files("fusebox.controlplane.spec_store").joinpath("redis_apply.lua").read_text()
)

_UNAVAILABLE_ERRORS = UNAVAILABLE_ERRORS


class RedisSpecStore:
    """A ``SpecStore`` in Redis (any URL ``fusebox.controlplane.redis_client`` takes).

    >>> store = RedisSpecStore("redis://127.0.0.1:6379/0")
    >>> await store.ping()

    Creating the object does no I/O. ``key_prefix`` lets several control
    planes (or tests) share one database.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "fusebox",
        changes_maxlen: int = 10_000,
        block_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._location = parse_redis_url(url)
        # The socket timeout is longer than an XREAD BLOCK.
        self._client: RedisClient = connect_redis(
            self._location, socket_timeout=block_seconds + 3.0
        )
        self._clock = clock
        self._changes_maxlen = changes_maxlen
        self._block_ms = int(block_seconds * 1000)
        base = f"{key_prefix}:{{specs}}"
        self._history_prefix = f"{base}:history:"
        self._store_revision_key = f"{base}:store_revision"
        self._last_revision_key = f"{base}:last_revision"
        self._live_digest_key = f"{base}:live_digest"
        self._live_key = f"{base}:live"
        self._changes_key = f"{base}:changes"
        self._control_plane_id_key = f"{base}:control_plane_id"
        self._apply_script = self._client.register_script(_APPLY_SCRIPT)

    # -- the SpecStore contract -------------------------------------------

    async def apply(self, writes: Sequence[SpecWrite]) -> list[WriteResult]:
        check_writes(writes)
        if not writes:
            return []
        answer = await self._run_apply([_encode_write(write) for write in writes], writes)
        return [
            WriteResult(write.namespace, write.name, int(answer[2 + 2 * i]), answer[3 + 2 * i] == 1)
            for i, write in enumerate(writes)
        ]

    async def get(self, namespace: str, name: str, revision: int = 0) -> StoredSpec:
        field = _field(namespace, name)
        with self._translate_errors():
            if revision == 0:
                live = await self._client.hget(self._live_key, field)
            else:
                live = None
                record = await self._client.lindex(self._history_key(field), revision - 1)
        if revision == 0:
            if live is None:
                raise SpecNotFound(namespace, name)
            data = json.loads(live)
            return StoredSpec(
                namespace=namespace,
                name=name,
                revision=data["revision"],
                yaml=data["yaml"],
                document=data["document"],
                digest=data["digest"],
                update_time=data["update_time"],
            )
        if revision < 0 or record is None:
            raise SpecNotFound(namespace, name, revision)
        data = json.loads(record)
        if data["action"] == RevisionAction.DELETE.value:
            raise SpecNotFound(namespace, name, revision)
        return StoredSpec(
            namespace=namespace,
            name=name,
            revision=data["revision"],
            yaml=data["yaml"],
            document=data["document"],
            digest=data["digest"],
            update_time=data["create_time"],
        )

    async def list(self, namespace: str | None = None) -> tuple[list[StoredSpec], int]:
        with self._translate_errors():
            # MULTI/EXEC: the specs and the store revision are one snapshot.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._live_key)
                pipe.get(self._store_revision_key)
                live, store_revision = await pipe.execute()
        specs = []
        for field, value in live.items():
            spec_namespace, name = _split_field(field)
            if namespace is not None and spec_namespace != namespace:
                continue
            data = json.loads(value)
            specs.append(
                StoredSpec(
                    namespace=spec_namespace,
                    name=name,
                    revision=data["revision"],
                    yaml=data["yaml"],
                    document=data["document"],
                    digest=data["digest"],
                    update_time=data["update_time"],
                )
            )
        specs.sort(key=lambda spec: (spec.namespace, spec.name))
        return specs, int(store_revision or 0)

    async def delete(self, namespace: str, name: str, expected_revision: int | None = None) -> int:
        tombstone = SpecWrite(
            namespace=namespace,
            name=name,
            yaml="",
            document={},
            digest="",
            expected_revision=expected_revision,
            action=RevisionAction.DELETE,
        )
        answer = await self._run_apply([_encode_write(tombstone)], [tombstone])
        return int(answer[2])

    async def history(self, namespace: str, name: str) -> builtins.list[RevisionRecord]:
        with self._translate_errors():
            records = await self._client.lrange(self._history_key(_field(namespace, name)), 0, -1)
        if not records:
            raise SpecNotFound(namespace, name)
        history = []
        for record in records:
            data = json.loads(record)
            history.append(
                RevisionRecord(
                    revision=data["revision"],
                    action=RevisionAction(data["action"]),
                    create_time=data["create_time"],
                    digest=data["digest"],
                    yaml=data["yaml"],
                    document=data["document"],
                    rolled_back_to=data["rolled_back_to"],
                )
            )
        return history

    async def store_revision(self) -> int:
        with self._translate_errors():
            value = await self._client.get(self._store_revision_key)
        return int(value or 0)

    async def control_plane_id(self) -> str:
        """Created by the first replica to ask (SET NX), then read by all of them."""
        with self._translate_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._control_plane_id_key, str(uuid.uuid4()), nx=True)
                pipe.get(self._control_plane_id_key)
                _, value = await pipe.execute()
        return str(value)

    async def changes(self, after: int) -> AsyncIterator[int]:
        """Tails the changes stream with XREAD BLOCK.

        After a connection loss it waits for Redis (with backoff), re-reads the
        newest entry and yields its revision if it moved past what was seen, so
        a caller never misses the fact that something changed while it was away.
        """
        seen = after
        backoff = 0.05
        while True:
            try:
                last_id, current = await self._newest_change()
                if current > seen:
                    seen = current
                    yield current
                backoff = 0.05
                while True:
                    response: Any = await self._client.xread(
                        {self._changes_key: last_id}, block=self._block_ms
                    )
                    for entry_id, values in _stream_entries(response):
                        last_id = entry_id
                        current = max(current, int(values["revision"]))
                    if current > seen:
                        seen = current
                        yield current
            except _UNAVAILABLE_ERRORS:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def ping(self) -> None:
        with self._translate_errors():
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    # -- plumbing ----------------------------------------------------------

    def _history_key(self, field: str) -> str:
        return self._history_prefix + field

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        with self._location.unavailable_as_store_error("spec store"):
            yield

    def _safe_url(self) -> str:
        return self._location.display  # never the password

    async def _newest_change(self) -> tuple[str, int]:
        """The newest stream entry id (or "0-0") and the store revision."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self._changes_key, "+", "-", count=1)
            pipe.get(self._store_revision_key)
            newest, store_revision = await pipe.execute()
        last_id = newest[0][0] if newest else "0-0"
        return last_id, int(store_revision or 0)

    async def _run_apply(
        self, encoded: Sequence[tuple[str, ...]], writes: Sequence[SpecWrite]
    ) -> builtins.list[Any]:
        keys = [
            self._store_revision_key,
            self._last_revision_key,
            self._live_digest_key,
            self._live_key,
            self._changes_key,
        ]
        keys.extend(self._history_key(arguments[0]) for arguments in encoded)
        args: builtins.list[str] = [repr(self._clock()), str(self._changes_maxlen)]
        for arguments in encoded:
            args.extend(arguments)
        with self._translate_errors():
            answer = await self._run_apply_script(keys, args)
        status = answer[0]
        if status == "conflict":
            write = writes[int(answer[1]) - 1]
            expected = write.expected_revision if write.expected_revision is not None else 0
            raise RevisionConflict(write.namespace, write.name, expected, int(answer[2]))
        if status == "not_found":
            write = writes[int(answer[1]) - 1]
            raise SpecNotFound(write.namespace, write.name)
        return answer

    async def _run_apply_script(
        self, keys: builtins.list[str], args: builtins.list[str]
    ) -> builtins.list[Any]:
        """The apply script; with ``wait_replicas``, followed by WAIT on the same connection.

        WAIT counts the replicas that acknowledged the writes of *its*
        connection, so the script and WAIT share one (non-transactional)
        pipeline. A write fewer replicas acknowledged in time is reported as
        unavailable: it may or may not survive a failover, so it is not
        committed (see docs/stores.md, "Sentinel").
        """
        replicas = self._location.wait_replicas
        if not replicas or isinstance(self._client, RedisCluster):
            answer: builtins.list[Any] = await self._apply_script(keys=keys, args=args)
            return answer
        async with self._client.pipeline(transaction=False) as pipe:
            await self._apply_script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, self._location.wait_timeout_ms)
            answer, acknowledged = await pipe.execute()
        if answer[0] == "ok" and int(acknowledged) < replicas:
            raise StoreUnavailable(
                f"redis spec store {self._safe_url()}: the write reached {acknowledged} of "
                f"{replicas} replica(s) within {self._location.wait_timeout_ms} ms; "
                "it is not committed and may be lost by a failover"
            )
        return answer


def _stream_entries(response: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """The (id, fields) pairs of an XREAD reply on one stream, RESP2 or RESP3 shaped."""
    streams = response.items() if isinstance(response, dict) else response or ()
    for _stream, entries in streams:
        yield from ((str(entry_id), values) for entry_id, values in entries)


def _field(namespace: str, name: str) -> str:
    """The spec's field in the store hashes: escaped so "/" and " " stay separators."""
    return f"{quote(namespace, safe='')}/{quote(name, safe='')}"


def _split_field(field: str) -> tuple[str, str]:
    namespace, _, name = field.partition("/")
    return unquote(namespace), unquote(name)


def _encode_write(write: SpecWrite) -> tuple[str, str, str, str, str, str]:
    """The six script arguments of one write (see redis_apply.lua)."""

    def tail(value: dict[str, Any]) -> str:
        # The JSON object minus its "{": the script prepends the revision fields.
        return encode_json(value)[1:]

    deleting = write.action is RevisionAction.DELETE
    live_tail = tail({"yaml": write.yaml, "document": write.document, "digest": write.digest})
    record_tail = tail(
        {
            "action": write.action.value,
            "digest": "" if deleting else write.digest,
            "yaml": "" if deleting else write.yaml,
            "document": None if deleting else write.document,
            "rolled_back_to": write.rolled_back_to,
        }
    )
    expected = "" if write.expected_revision is None else str(write.expected_revision)
    return (
        _field(write.namespace, write.name),
        expected,
        write.action.value,
        write.digest,
        "" if deleting else live_tail,
        record_tail,
    )
