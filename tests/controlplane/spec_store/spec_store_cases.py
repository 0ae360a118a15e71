"""Building blocks for the store tests: spec writes with real digests, a deadline helper."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fusebox.controlplane.spec_store.base import RevisionAction, SpecWrite

DEADLINE = 10.0  # generous: only reached when something is broken


def resiliency_document(name: str, content: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "policies": {"timeouts": {"general": content}},
            "targets": {"apps": {}},  # an empty object must stay an object
        },
    }


def digest_of(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_write(
    name: str,
    content: str = "5s",
    *,
    namespace: str = "default",
    expected_revision: int | None = None,
    action: RevisionAction = RevisionAction.APPLY,
    rolled_back_to: int = 0,
) -> SpecWrite:
    document = resiliency_document(name, content, namespace)
    yaml = (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"spec:\n  policies:\n    timeouts:\n      general: {content}\n"
    )
    return SpecWrite(
        namespace=namespace,
        name=name,
        yaml=yaml,
        document=document,
        digest=digest_of(document),
        expected_revision=expected_revision,
        action=action,
        rolled_back_to=rolled_back_to,
    )


async def within_deadline(awaitable: Any) -> Any:
    """Awaits a condition, failing the test (not hanging it) if it never comes."""
    return await asyncio.wait_for(awaitable, DEADLINE)


async def next_change(changes: AsyncIterator[int]) -> int:
    return int(await within_deadline(anext(changes)))
