"""The parsed form of one Dapr `kind: Resiliency` document.

Policies are the runtime values from ``fusebox.agent.policy`` (one representation for
both sides); targets keep the *names* of the policies they use, exactly as
written, so resolution can apply Dapr's lookup and override rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fusebox.agent.policy import (
    BreakerScope,
    CircuitBreakerPolicy,
    FallbackPolicy,
    RetryPolicy,
    TimeoutPolicy,
)

API_VERSION = "dapr.io/v1alpha1"
KIND = "Resiliency"
DEFAULT_NAMESPACE = "default"


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TargetRef:
    """The policy names one target entry binds (None = not set)."""

    timeout: str | None = None
    retry: str | None = None
    circuit_breaker: str | None = None
    fallback: str | None = None
    circuit_breaker_scope: BreakerScope | None = None  # actors only
    circuit_breaker_cache_size: int | None = None  # apps/actors


@dataclass(frozen=True, slots=True)
class ComponentTargets:
    outbound: TargetRef | None = None
    inbound: TargetRef | None = None


@dataclass(frozen=True, slots=True)
class ResiliencySpec:
    namespace: str
    name: str
    scopes: tuple[str, ...] = ()  # empty: every app
    timeouts: Mapping[str, TimeoutPolicy] = field(default_factory=_empty)
    retries: Mapping[str, RetryPolicy] = field(default_factory=_empty)
    circuit_breakers: Mapping[str, CircuitBreakerPolicy] = field(default_factory=_empty)
    fallbacks: Mapping[str, FallbackPolicy] = field(default_factory=_empty)
    apps: Mapping[str, TargetRef] = field(default_factory=_empty)
    actors: Mapping[str, TargetRef] = field(default_factory=_empty)
    components: Mapping[str, ComponentTargets] = field(default_factory=_empty)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def applies_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """One validated document with the text and mapping it came from."""

    spec: ResiliencySpec
    yaml: str  # the document's own text (one document of a multi-document file)
    document: Mapping[str, Any]  # plain JSON-compatible data as loaded
    digest: str  # sha256 hex of the canonical JSON form of ``document``
