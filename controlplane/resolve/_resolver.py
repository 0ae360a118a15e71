"""Compute what one (namespace, app-id) enforces from the specs in its scope.

The merge follows Dapr's ``FromConfigurations``: built-in retries first, then
every spec in scope in a fixed order, each one overwriting policies and target
entries of the same name. Dapr's order is the order the specs are listed in
(Kubernetes: by name; self-hosted: by file name); Fusebox sorts by
(namespace, name) so the result never depends on the order specs are passed in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from fusebox.agent.policy import (
    DEFAULT_CACHE_SIZE,
    BreakerScope,
    CircuitBreakerPolicy,
    Direction,
    FallbackPolicy,
    RateLimitPolicy,
    ResolvedPolicies,
    RetryBudgetPolicy,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
    TimeoutPolicy,
)
from fusebox.controlplane.resolve._builtins import BUILTIN_RETRIES, override_builtin
from fusebox.controlplane.resolve._defaults import (
    COMPONENT_TYPES,
    PolicyKind,
    actor_levels,
    app_levels,
    component_levels,
    default_name,
    typed_component_level,
)
from fusebox.controlplane.spec.model import ComponentTargets, ResiliencySpec, TargetRef

# Dapr sizes the breaker cache of an explicit actor target at 5000 and every
# other one (apps, and actors served by defaults) at 100.
ACTOR_CACHE_SIZE = 5000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Sourced(Generic[T]):
    """A value and the spec that defined it ("" for Dapr's built-ins)."""

    value: T
    spec_namespace: str = ""
    spec_name: str = ""


@dataclass(slots=True)
class _Merged:
    """Every name visible to the app after Dapr's last-writer-wins merge."""

    timeouts: dict[str, _Sourced[TimeoutPolicy]] = field(default_factory=dict)
    retries: dict[str, _Sourced[RetryPolicy]] = field(default_factory=dict)
    circuit_breakers: dict[str, _Sourced[CircuitBreakerPolicy]] = field(default_factory=dict)
    fallbacks: dict[str, _Sourced[FallbackPolicy]] = field(default_factory=dict)
    rate_limits: dict[str, _Sourced[RateLimitPolicy]] = field(default_factory=dict)
    retry_budgets: dict[str, _Sourced[RetryBudgetPolicy]] = field(default_factory=dict)
    apps: dict[str, _Sourced[TargetRef]] = field(default_factory=dict)
    actors: dict[str, _Sourced[TargetRef]] = field(default_factory=dict)
    components: dict[str, _Sourced[ComponentTargets]] = field(default_factory=dict)
    builtin_retries: dict[str, RetryPolicy] = field(default_factory=lambda: dict(BUILTIN_RETRIES))

    def add(self, spec: ResiliencySpec) -> None:
        def put(into: dict[str, _Sourced[T]], items: Mapping[str, T]) -> None:
            for name, value in items.items():
                into[name] = _Sourced(value, spec.namespace, spec.name)

        put(self.timeouts, spec.timeouts)
        put(self.circuit_breakers, spec.circuit_breakers)
        put(self.fallbacks, spec.fallbacks)
        put(self.rate_limits, spec.rate_limits)
        put(self.retry_budgets, spec.retry_budgets)
        put(self.apps, spec.apps)
        put(self.actors, spec.actors)
        # A component entry replaces both directions at once, as in Dapr.
        put(self.components, spec.components)
        for name, retry in spec.retries.items():
            if name in BUILTIN_RETRIES:
                replacement = override_builtin(name, retry)
                if replacement is None:
                    continue  # protected: Dapr keeps the built-in
                self.builtin_retries[name] = replacement
                retry = replacement
            self.retries[name] = _Sourced(retry, spec.namespace, spec.name)

    def retry(self, name: str) -> RetryPolicy | None:
        # Built-ins live in the same namespace of names as user retries in Dapr,
        # so a target may name one.
        if name in self.retries:
            return self.retries[name].value
        return self.builtin_retries.get(name)


def merge_key(spec: ResiliencySpec) -> tuple[str, str]:
    """The order specs are merged in: the last one wins a policy or target name.

    Dapr merges in the order it loads documents (self-hosted: by file name;
    Kubernetes: as the operator lists them); Fusebox uses the spec's name, so
    the result never depends on the order specs were passed or applied in.
    """
    return spec.key


def resolve_policies(
    specs: Iterable[ResiliencySpec], namespace: str, app_id: str
) -> ResolvedPolicies:
    """The policies ``app_id`` in ``namespace`` enforces, with Dapr's rules.

    Specs of other namespaces, and specs whose ``scopes`` do not list the app,
    are ignored. The result holds one target entry per explicit target, the
    default slots filled from Dapr's ``Default…Policy`` names, and the built-in
    retries after overrides. The same specs in any order give an equal result.

    Raises ValueError when two specs in scope have the same (namespace, name):
    which one wins would then depend on the input order.

    >>> resolve_policies([], "default", "checkout").targets
    ()
    """
    in_scope = sorted(
        (s for s in specs if s.namespace == namespace and s.applies_to(app_id)),
        key=merge_key,
    )
    for earlier, later in itertools.pairwise(in_scope):
        if earlier.key == later.key:
            raise ValueError(f"two specs named {later.namespace}/{later.name} in scope")
    merged = _Merged()
    for spec in in_scope:
        merged.add(spec)

    targets = [
        *_explicit_targets(merged),
        *_app_defaults(merged),
        *_actor_defaults(merged),
        *_component_defaults(merged),
    ]
    targets.sort(key=_target_order)
    return ResolvedPolicies(
        namespace=namespace,
        app_id=app_id,
        targets=tuple(targets),
        builtin_retries=MappingProxyType(dict(sorted(merged.builtin_retries.items()))),
    )


def _target_order(t: TargetPolicy) -> tuple[str, bool, str, str, str]:
    direction = t.direction.value if t.direction is not None else ""
    return (t.kind.value, t.is_default, t.name, direction, t.component_type)


# ---- explicit target entries ------------------------------------------------


def _explicit_targets(merged: _Merged) -> list[TargetPolicy]:
    targets: list[TargetPolicy] = []
    for name, app in merged.apps.items():
        targets.append(_bind(merged, app, TargetKind.APP, name, None, DEFAULT_CACHE_SIZE))
    for name, actor in merged.actors.items():
        targets.append(_bind(merged, actor, TargetKind.ACTOR, name, None, ACTOR_CACHE_SIZE))
    for name, component in merged.components.items():
        # Dapr finds the component entry for both directions even when only one
        # is written; the other direction then has no policies and no defaults.
        for direction, ref in (
            (Direction.OUTBOUND, component.value.outbound),
            (Direction.INBOUND, component.value.inbound),
        ):
            sourced = _Sourced(ref or TargetRef(), component.spec_namespace, component.spec_name)
            targets.append(
                _bind(merged, sourced, TargetKind.COMPONENT, name, direction, DEFAULT_CACHE_SIZE)
            )
    return targets


def _bind(
    merged: _Merged,
    ref: _Sourced[TargetRef],
    kind: TargetKind,
    name: str,
    direction: Direction | None,
    default_cache_size: int,
) -> TargetPolicy:
    names = ref.value

    def pick(table: Mapping[str, _Sourced[T]], key: str | None) -> T | None:
        return table[key].value if key is not None and key in table else None

    return TargetPolicy(
        kind=kind,
        name=name,
        direction=direction,
        timeout=pick(merged.timeouts, names.timeout),
        retry=merged.retry(names.retry) if names.retry is not None else None,
        circuit_breaker=pick(merged.circuit_breakers, names.circuit_breaker),
        fallback=pick(merged.fallbacks, names.fallback),
        circuit_breaker_scope=names.circuit_breaker_scope,
        # Dapr treats 0 as "not set" too.
        circuit_breaker_cache_size=names.circuit_breaker_cache_size or default_cache_size,
        spec_namespace=ref.spec_namespace,
        spec_name=ref.spec_name,
        # Extensions with no Default… names (as fallbacks): only an entry binds them.
        rate_limit=pick(merged.rate_limits, names.rate_limit),
        retry_budget=pick(merged.retry_budgets, names.retry_budget),
    )


# ---- default slots ----------------------------------------------------------


def _first_defined(
    table: Mapping[str, _Sourced[T]], kind: PolicyKind, levels: tuple[str, ...]
) -> _Sourced[T] | None:
    for level in levels:
        found = table.get(default_name(kind, level))
        if found is not None:
            return found
    return None


def _default_slot(
    merged: _Merged,
    kind: TargetKind,
    levels: tuple[str, ...],
    direction: Direction | None = None,
    component_type: str = "",
) -> TargetPolicy | None:
    """A default slot, each policy kind looked up separately; None if all are unset."""
    timeout = _first_defined(merged.timeouts, PolicyKind.TIMEOUT, levels)
    retry = _first_defined(merged.retries, PolicyKind.RETRY, levels)
    breaker = _first_defined(merged.circuit_breakers, PolicyKind.CIRCUIT_BREAKER, levels)
    # The breaker's spec is part of the breaker's identity, so it names the slot.
    source = breaker or retry or timeout
    if source is None:
        return None
    return TargetPolicy(
        kind=kind,
        direction=direction,
        component_type=component_type,
        is_default=True,
        timeout=timeout.value if timeout else None,
        retry=retry.value if retry else None,
        circuit_breaker=breaker.value if breaker else None,
        # Dapr keys a default actor breaker by actor type.
        circuit_breaker_scope=(
            BreakerScope.TYPE if kind is TargetKind.ACTOR and breaker is not None else None
        ),
        circuit_breaker_cache_size=DEFAULT_CACHE_SIZE,
        spec_namespace=source.spec_namespace,
        spec_name=source.spec_name,
    )


def _app_defaults(merged: _Merged) -> list[TargetPolicy]:
    slot = _default_slot(merged, TargetKind.APP, app_levels())
    return [slot] if slot else []


def _actor_defaults(merged: _Merged) -> list[TargetPolicy]:
    slot = _default_slot(merged, TargetKind.ACTOR, actor_levels())
    return [slot] if slot else []


def _component_defaults(merged: _Merged) -> list[TargetPolicy]:
    slots: list[TargetPolicy] = []
    for direction in (Direction.OUTBOUND, Direction.INBOUND):
        levels = component_levels(direction)
        untyped = _default_slot(merged, TargetKind.COMPONENT, levels, direction)
        if untyped:
            slots.append(untyped)
        for type_word, type_prefix in COMPONENT_TYPES.items():
            # A typed slot only when a typed name exists: otherwise it would
            # equal the untyped slot, which lookup falls back to anyway.
            if not _has_typed_default(merged, direction, type_word):
                continue
            typed = _default_slot(
                merged,
                TargetKind.COMPONENT,
                component_levels(direction, type_word),
                direction,
                type_prefix,
            )
            if typed:
                slots.append(typed)
    return slots


def _has_typed_default(merged: _Merged, direction: Direction, type_word: str) -> bool:
    level = typed_component_level(direction, type_word)
    return (
        default_name(PolicyKind.TIMEOUT, level) in merged.timeouts
        or default_name(PolicyKind.RETRY, level) in merged.retries
        or default_name(PolicyKind.CIRCUIT_BREAKER, level) in merged.circuit_breakers
    )
