"""Which breaker policy binds a breaker key: for an agent (report/lease
validation), and in the stored specs (an operator's override ahead of use).

An agent may only report outcomes and take leases for breakers its resolved
policies define: the key's spec must be the spec that defined the target's
breaker, and the target must be an explicit entry or fall under a default
slot. Anything else is refused without creating state. An operator may set an
override on a breaker no agent has used yet when the stored specs bind it by
the same rule for some app (``stored_breaker_policy``).
"""

from __future__ import annotations

from collections.abc import Sequence

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    Direction,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.trip import did_you_mean
from fusebox.controlplane.breakers.model import BreakerTarget
from fusebox.controlplane.resolve import resolve_policies
from fusebox.controlplane.spec.model import ResiliencySpec, TargetRef


def _direction(key: BreakerKey) -> Direction | None:
    if key.kind is not TargetKind.COMPONENT:
        return None
    try:
        return Direction(key.method)
    except ValueError:
        return None


def breaker_policy_for(
    policies: ResolvedPolicies | None, key: BreakerKey
) -> CircuitBreakerPolicy | None:
    """The breaker policy ``policies`` give ``key``, or None when they give none."""
    if policies is None or not key.target:
        return None
    direction = _direction(key)
    if key.kind is TargetKind.COMPONENT and direction is None:
        return None
    explicit: TargetPolicy | None = None
    default: TargetPolicy | None = None
    for target in policies.targets:
        if target.kind is not key.kind or target.direction is not direction:
            continue
        if not target.is_default and target.name == key.target:
            explicit = target
            break
        if target.is_default and (default is None or not target.component_type):
            default = target
    chosen = explicit or default
    if chosen is None or chosen.circuit_breaker is None:
        return None
    if (chosen.spec_namespace, chosen.spec_name) != (key.namespace, key.spec):
        return None
    return chosen.circuit_breaker


def stored_breaker_policy(
    specs: Sequence[ResiliencySpec], key: BreakerKey
) -> CircuitBreakerPolicy | None:
    """The breaker policy the stored ``specs`` give ``key`` for some app, or None.

    Resolved as each app would resolve it (``resolve_policies``): an app named
    in no scope, then each app a scope of the namespace names, in order; the
    first that gets ``key`` a policy (``breaker_policy_for``) gives it.
    """
    app_ids = {app for spec in specs if spec.namespace == key.namespace for app in spec.scopes}
    for app_id in ["", *sorted(app_ids)]:  # "": no scope lists it, so only unscoped specs apply
        policy = breaker_policy_for(resolve_policies(specs, key.namespace, app_id), key)
        if policy is not None:
            return policy
    return None


def stored_target_policy(
    specs: Sequence[ResiliencySpec], target: BreakerTarget
) -> CircuitBreakerPolicy | None:
    """A breaker policy the stored ``specs`` give some breaker of ``target``, or None."""
    methods = [d.value for d in Direction] if target.kind is TargetKind.COMPONENT else [""]
    for method in methods:
        key = BreakerKey(target.namespace, target.spec, target.kind, target.target, method)
        policy = stored_breaker_policy(specs, key)
        if policy is not None:
            return policy
    return None


def unbound_reason(specs: Sequence[ResiliencySpec], target: BreakerTarget) -> tuple[bool, str]:
    """Why no stored spec binds a breaker of ``target``, for an operator: whether
    the target's spec is stored at all, and a message naming it (and what it binds)."""
    what = f"{target.kind.value} {target.target!r}"
    spec_name = f"{target.namespace}/{target.spec}"
    stored = next(
        (s for s in specs if (s.namespace, s.name) == (target.namespace, target.spec)), None
    )
    if stored is None:
        others = sorted(
            f"{s.namespace}/{s.name}" for s in specs
            if s.namespace == target.namespace and stored_target_policy(
                specs, BreakerTarget(s.namespace, s.name, target.kind, target.target)
            ) is not None
        )
        hint = f"; specs that bind one to {what}: {', '.join(others)}" if others else ""
        return False, (
            f"no spec {spec_name} is stored: a breaker no agent has used takes its policy "
            f"from the stored spec that binds it; apply the spec first{hint}"
        )
    bound = _bound_targets(stored)
    names = [name for kind, name in bound if kind is target.kind]
    listed = ", ".join(f"{kind.value} {name}" for kind, name in bound) or "none"
    return True, (
        f"spec {spec_name} binds no circuit breaker to {what}{did_you_mean(target.target, names)}"
        f"; it binds one to: {listed}"
    )


def _bound_targets(spec: ResiliencySpec) -> list[tuple[TargetKind, str]]:
    """The explicit targets of ``spec`` whose entry names a circuit breaker."""
    def binds(ref: TargetRef | None) -> bool:
        return ref is not None and ref.circuit_breaker is not None

    found = [(TargetKind.APP, name) for name, ref in spec.apps.items() if binds(ref)]
    found += [(TargetKind.ACTOR, name) for name, ref in spec.actors.items() if binds(ref)]
    found += [
        (TargetKind.COMPONENT, name) for name, refs in spec.components.items()
        if binds(refs.outbound) or binds(refs.inbound)
    ]
    return sorted(found, key=lambda found: (found[0].value, found[1]))
