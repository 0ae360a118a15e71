"""The Redis audit store: one capped stream, ``fusebox:{audit}:events``.

``XADD … MAXLEN ~ N`` keeps the newest ~N events (100,000 by default) so the
log cannot grow Redis memory without bound; the oldest fall off first. Lists
read the stream newest first in pages and filter each entry, stopping once
``limit`` events matched: the cap bounds the work of a query that matches
little.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any

from fusebox.controlplane.audit.model import (
    AuditAction,
    AuditEntry,
    AuditEvent,
    AuditQuery,
    AuditTargetKind,
    clamp_limit,
)
from fusebox.controlplane.redis_client import (
    UNAVAILABLE_ERRORS,
    RedisClient,
    connect_redis,
    parse_redis_url,
)
from fusebox.controlplane.store_errors import StoreUnavailable

__all__ = ["DEFAULT_MAX_EVENTS", "RedisAuditStore"]

DEFAULT_MAX_EVENTS = 100_000
_PAGE = 500
_UNAVAILABLE_ERRORS = UNAVAILABLE_ERRORS


class RedisAuditStore:
    """An ``AuditStore`` in a capped Redis stream; no I/O until first used."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "fusebox",
        max_events: int = DEFAULT_MAX_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # One stream key, one slot: the same on every topology.
        self._client: RedisClient = connect_redis(parse_redis_url(url), socket_timeout=5.0)
        self._clock = clock
        self._max_events = max_events
        self.key = f"{key_prefix}:{{audit}}:events"

    async def record(self, entry: AuditEntry) -> AuditEvent:
        now = self._clock()
        fields = {
            "time": repr(now), "actor": entry.actor, "action": entry.action.value,
            "target_kind": entry.target_kind.value, "namespace": entry.namespace,
            "target": entry.target, "target_key": entry.target_key,
            "previous": entry.previous, "current": entry.current, "detail": entry.detail,
        }
        try:
            stream_id = await self._client.xadd(
                self.key, fields,  # type: ignore[arg-type]
                maxlen=self._max_events, approximate=True,
            )
        except _UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable(f"audit store: {error}") from error
        return AuditEvent(id=str(stream_id), time=now, entry=entry)

    async def list(self, query: AuditQuery) -> builtins.list[AuditEvent]:
        limit = clamp_limit(query.limit)
        found: builtins.list[AuditEvent] = []
        upper = "+"
        try:
            while len(found) < limit:
                page: Any = await self._client.xrevrange(self.key, max=upper, min="-",
                                                         count=_PAGE)
                for stream_id, fields in page:
                    event = _event(stream_id, fields)
                    if query.matches(event):
                        found.append(event)
                        if len(found) == limit:
                            break
                if len(page) < _PAGE:
                    break
                upper = f"({page[-1][0]}"  # exclusive: continue below the last entry read
        except _UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable(f"audit store: {error}") from error
        return found

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except _UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable(f"audit store: {error}") from error

    async def close(self) -> None:
        await self._client.aclose()


def _event(stream_id: str, fields: dict[str, str]) -> AuditEvent:
    return AuditEvent(
        id=stream_id, time=float(fields.get("time", "0")),
        entry=AuditEntry(
            actor=fields.get("actor", ""), action=AuditAction(fields["action"]),
            target_kind=AuditTargetKind(fields["target_kind"]),
            namespace=fields.get("namespace", ""), target=fields.get("target", ""),
            target_key=fields.get("target_key", ""), previous=fields.get("previous", ""),
            current=fields.get("current", ""), detail=fields.get("detail", ""),
        ),
    )
