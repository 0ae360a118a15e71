"""A service instance that calls back to back, for the local-first end-to-end tests.

Runs each ``--case TARGET:OUTCOMES:CALLS`` in turn with a sync ``Agent`` or an
``AsyncAgent``, calling app ``TARGET`` (method ``orders``) ``CALLS`` times with
no pause, and prints one JSON object on stdout: per case, what every call
returned and how many attempts reached its upstream (a callable in this
process that answers at once, no I/O).

    python -m tests.e2e.burst_agent --server 127.0.0.1:50051 --mode async \\
        --case order-processor:F:2000
    python -m tests.e2e.burst_agent --spec spec.yaml --case inventory:FFSFFFF:6

``OUTCOMES`` scripts the upstream attempt by attempt (``F`` fails, ``S``
succeeds; the last letter repeats). ``--spec`` instead of ``--server`` runs
with no control plane at all, on the policies that spec resolves to (Dapr's
per-instance behaviour); ``--per-instance`` connects but keeps breakers per
instance (``cluster_breakers=False``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, ResolvedPolicies


class UpstreamDown(ConnectionError):
    pass


class Script:
    """The upstream: each attempt takes the next scripted outcome."""

    def __init__(self, outcomes: str) -> None:
        self.outcomes = outcomes or "F"
        self.attempts = 0

    def __call__(self) -> str:
        outcome = self.outcomes[min(self.attempts, len(self.outcomes) - 1)]
        self.attempts += 1
        if outcome == "F":
            raise UpstreamDown("upstream down")
        return "ok"

    async def coroutine(self) -> str:
        return self()  # raises before it awaits anything, like a refused connection


def static_policies(spec: Path, app_id: str) -> ResolvedPolicies:
    from fusebox.controlplane.resolve import resolve_policies
    from fusebox.controlplane.spec import parse_documents

    documents = parse_documents(spec.read_text(), str(spec))
    return resolve_policies([d.spec for d in documents], "default", app_id)


def run_sync(fb: Agent, name: str, count: int, upstream: Script) -> list[dict[str, Any]]:
    target = fb.app(name, method="orders")
    calls = []
    for _ in range(count):
        before = upstream.attempts
        try:
            target.call(upstream)
            result = "ok"
        except BreakerOpenError:
            result = "rejected"
        except UpstreamDown:
            result = "failed"
        calls.append({"result": result, "attempts": upstream.attempts - before})
    return calls


async def run_async(fb: AsyncAgent, name: str, count: int,
                    upstream: Script) -> list[dict[str, Any]]:
    target = fb.app(name, method="orders")
    calls = []
    for _ in range(count):
        before = upstream.attempts
        try:
            await target.call(upstream.coroutine)
            result = "ok"
        except BreakerOpenError:
            result = "rejected"
        except UpstreamDown:
            result = "failed"
        calls.append({"result": result, "attempts": upstream.attempts - before})
    return calls


def report(fb: Agent | AsyncAgent, results: dict[str, dict[str, Any]]) -> None:
    link = fb._link
    sys.stdout.write(json.dumps({
        "cases": results,
        "policies": fb.policies is not None and bool(fb.policies.targets),
        "following": link is not None and link.cluster is not None and link.cluster.following,
        "states": {name: str(state) for name, state in fb.breaker_states().items()},
    }) + "\n")
    sys.stdout.flush()


def case(text: str) -> tuple[str, str, int]:
    name, outcomes, count = text.split(":")
    return name, outcomes, int(count)


def main() -> int:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--spec", type=Path)
    parser.add_argument("--mode", choices=["sync", "async"], default="sync")
    parser.add_argument("--per-instance", action="store_true")
    parser.add_argument("--app-id", default="checkout")
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--case", type=case, action="append", required=True)
    parser.add_argument("--cache-path", type=Path, default=None)
    args = parser.parse_args()

    options: dict[str, Any] = {"app_id": args.app_id, "instance_id": args.instance_id,
                               "cache_path": args.cache_path,
                               "cluster_breakers": not args.per_instance}
    if args.spec is not None:
        options["policies"] = static_policies(args.spec, args.app_id)
    else:
        options["server"] = args.server
    results: dict[str, dict[str, Any]] = {}
    if args.mode == "sync":
        with Agent(**options) as fb:
            for name, outcomes, count in args.case:
                upstream = Script(outcomes)
                calls = run_sync(fb, name, count, upstream)
                results[name] = {"reached": upstream.attempts, "calls": calls}
            report(fb, results)
        return 0

    async def main_async() -> None:
        async with AsyncAgent(**options) as afb:
            for name, outcomes, count in args.case:
                upstream = Script(outcomes)
                calls = await run_async(afb, name, count, upstream)
                results[name] = {"reached": upstream.attempts, "calls": calls}
            report(afb, results)

    asyncio.run(main_async())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
