"""``spec.targets``: apps, actors and components, and the policies they name.

Policy names are read as written. Dapr's policies are global across the
documents an app loads, so whether a name is defined is checked with the other
documents (``fusebox.controlplane.resolve.check_documents``), not here.

A target entry that uses no policy is accepted with a warning: Dapr loads it,
and its only effect is that the ``Default…`` policies no longer apply to that
target (``EndpointPolicy`` and its siblings in dapr/dapr
``pkg/resiliency/resiliency.go`` use an existing entry as it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fusebox.agent.policy import BreakerScope
from fusebox.agent.trip import did_you_mean
from fusebox.controlplane.spec.fields import DocumentCheck
from fusebox.controlplane.spec.loader import Path
from fusebox.controlplane.spec.model import ComponentTargets, TargetRef

TARGET_KINDS = ("apps", "actors", "components")
POLICY_REFERENCES = (
    "timeout", "retry", "circuitBreaker", "fallback",
    # Fusebox extensions (fleet budgets, docs/budgets.md):
    "rateLimit", "retryBudget",
)
APP_FIELDS = (*POLICY_REFERENCES, "circuitBreakerCacheSize")
ACTOR_FIELDS = (*POLICY_REFERENCES, "circuitBreakerScope", "circuitBreakerCacheSize")
COMPONENT_FIELDS = ("outbound", "inbound")
COMPONENT_DIRECTION_FIELDS = POLICY_REFERENCES

# Which spec.policies section each reference names.
SECTION_OF: Mapping[str, str] = {
    "timeout": "timeouts",
    "retry": "retries",
    "circuitBreaker": "circuitBreakers",
    "fallback": "fallbacks",
    "rateLimit": "rateLimits",
    "retryBudget": "retryBudgets",
}

_NO_POLICY = (
    "Dapr applies no policy to it, not even the Default… ones, as long as the entry exists"
)


class TargetReader:
    """Reads targets: their fields, and the policy names they use as written."""

    def __init__(self, check: DocumentCheck) -> None:
        self._check = check

    def apps(self, value: Any, path: Path) -> dict[str, TargetRef]:
        result: dict[str, TargetRef] = {}
        for name, raw in self._entries(value, path, "app-ids").items():
            ref = self._target(raw, (*path, name), APP_FIELDS)
            if ref is not None:
                result[name] = ref
        return result

    def actors(self, value: Any, path: Path) -> dict[str, TargetRef]:
        result: dict[str, TargetRef] = {}
        for name, raw in self._entries(value, path, "actor types").items():
            target_path = (*path, name)
            ref = self._target(raw, target_path, ACTOR_FIELDS)
            if ref is None:
                continue
            if ref.circuit_breaker is not None and ref.circuit_breaker_scope is None:
                raw_fields = raw if isinstance(raw, dict) else {}
                if "circuitBreakerScope" not in raw_fields:
                    self._check.fail(
                        (*target_path, "circuitBreakerScope"),
                        "circuitBreakerScope is required when an actor target has a "
                        "circuitBreaker; accepted: id, type, both",
                    )
                continue
            result[name] = ref
        return result

    def components(self, value: Any, path: Path) -> dict[str, ComponentTargets]:
        result: dict[str, ComponentTargets] = {}
        for name, raw in self._entries(value, path, "component names").items():
            component_path = (*path, name)
            fields = self._check.mapping(raw, component_path, "a mapping with outbound/inbound")
            if fields is None:
                continue
            self._check.known_keys(fields, component_path, COMPONENT_FIELDS)
            if not any(fields.get(d) is not None for d in COMPONENT_FIELDS):
                self._check.warn(
                    component_path,
                    f"this component target sets neither 'outbound' nor 'inbound': {_NO_POLICY}"
                    " (in either direction); add a direction or remove the entry",
                    at_key=True,
                )
            directions: dict[str, TargetRef | None] = {}
            for direction in COMPONENT_FIELDS:
                if fields.get(direction) is not None:
                    directions[direction] = self._target(
                        fields[direction], (*component_path, direction), COMPONENT_DIRECTION_FIELDS
                    )
            result[name] = ComponentTargets(
                outbound=directions.get("outbound"), inbound=directions.get("inbound")
            )
        return result

    # ---- one target ----------------------------------------------------------

    def _entries(self, value: Any, path: Path, what: str) -> Mapping[str, Any]:
        return self._check.mapping(value, path, f"a mapping of {what} to policies") or {}

    def _target(self, raw: Any, path: Path, allowed: tuple[str, ...]) -> TargetRef | None:
        check = self._check
        fields = check.mapping(raw, path, "a mapping of policy kinds to policy names")
        if fields is None:
            return None
        mark = len(check.violations)
        check.known_keys(fields, path, allowed)
        names = {
            key: self._policy_name(fields[key], (*path, key))
            for key in POLICY_REFERENCES
            if fields.get(key) is not None
        }
        if not any(fields.get(key) not in (None, "") for key in POLICY_REFERENCES):
            check.warn(
                path,
                f"this target uses no policy: {_NO_POLICY}; set at least one of "
                + ", ".join(POLICY_REFERENCES) + ", or remove the entry",
                at_key=True,
            )
        scope = None
        if fields.get("circuitBreakerScope") is not None:
            text = check.string(fields["circuitBreakerScope"], (*path, "circuitBreakerScope"))
            if text is not None:
                try:
                    scope = BreakerScope(text)
                except ValueError:
                    check.fail(
                        (*path, "circuitBreakerScope"),
                        f"unknown circuitBreakerScope {text!r}"
                        f"{did_you_mean(text, ('id', 'type', 'both'))}; accepted: id, type, both",
                    )
        cache_size = None
        if fields.get("circuitBreakerCacheSize") is not None:
            # 0 is "not set" in Dapr (decodeTargets): the default size applies. A
            # negative size makes Dapr's cache constructor fail, and Dapr then
            # drops the rest of the document's targets.
            cache_size = check.integer(
                fields["circuitBreakerCacheSize"], (*path, "circuitBreakerCacheSize"),
                minimum=0,
                rule="must be at least 0 (0 or leaving it out means Dapr's default: "
                     "100 for an app, 5000 for an actor type)",
            ) or None
        if names.get("retryBudget") is not None and names.get("retry") is None:
            check.warn(
                (*path, "retryBudget"),
                f"retry budget {names['retryBudget']!r} has no effect on this target: it "
                "names no retry policy, so no call is ever retried; add a retry or remove it",
            )
        if len(check.violations) > mark:
            return None
        return TargetRef(
            timeout=names.get("timeout"),
            retry=names.get("retry"),
            circuit_breaker=names.get("circuitBreaker"),
            fallback=names.get("fallback"),
            circuit_breaker_scope=scope,
            circuit_breaker_cache_size=cache_size,
            rate_limit=names.get("rateLimit"),
            retry_budget=names.get("retryBudget"),
        )

    def _policy_name(self, value: Any, path: Path) -> str | None:
        """The name as written; "" is "not set", as Dapr reads an empty name."""
        if value == "":
            self._check.warn(path, "an empty policy name means no policy here (as in Dapr); "
                                   "remove the field or name a policy")
            return None
        return self._check.string(value, path)
