"""``spec.targets``: apps, actors and components, and the policies they name.

A target naming a policy that is not defined is an error here (Dapr ignores
it silently), with a did-you-mean over the names defined for that kind.
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
POLICY_REFERENCES = ("timeout", "retry", "circuitBreaker", "fallback")
APP_FIELDS = (*POLICY_REFERENCES, "circuitBreakerCacheSize")
ACTOR_FIELDS = (*POLICY_REFERENCES, "circuitBreakerScope", "circuitBreakerCacheSize")
COMPONENT_FIELDS = ("outbound", "inbound")
COMPONENT_DIRECTION_FIELDS = POLICY_REFERENCES

# Which spec.policies section each reference names.
_SECTION_OF = {
    "timeout": "timeouts",
    "retry": "retries",
    "circuitBreaker": "circuitBreakers",
    "fallback": "fallbacks",
}


class TargetReader:
    """Reads targets and checks every policy name against the defined ones."""

    def __init__(self, check: DocumentCheck, defined: Mapping[str, tuple[str, ...]]) -> None:
        self._check = check
        self._defined = defined  # section name ("retries") -> policy names written

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
                self._check.fail(
                    component_path, "a component target needs 'outbound', 'inbound' or both"
                )
                continue
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
        if not any(fields.get(key) is not None for key in POLICY_REFERENCES):
            check.fail(
                path,
                "this target uses no policy; set at least one of "
                + ", ".join(POLICY_REFERENCES),
            )
        names = {
            key: self._reference(fields[key], (*path, key), key)
            for key in POLICY_REFERENCES
            if fields.get(key) is not None
        }
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
            cache_size = check.integer(
                fields["circuitBreakerCacheSize"], (*path, "circuitBreakerCacheSize"), minimum=1
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
        )

    def _reference(self, value: Any, path: Path, key: str) -> str | None:
        name = self._check.string(value, path)
        if name is None:
            return None
        section = _SECTION_OF[key]
        defined = self._defined.get(section, ())
        if name in defined:
            return name
        if defined:
            hint = did_you_mean(name, defined)
            listing = f"defined {section}: {', '.join(sorted(defined))}"
        else:
            hint, listing = "", f"spec.policies.{section} defines none"
        self._check.fail(path, f"{key} policy {name!r} is not defined{hint}; {listing}")
        return None
