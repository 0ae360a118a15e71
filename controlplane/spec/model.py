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
    RateLimitPolicy,
    RetryBudgetPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from fusebox.controlplane.spec.errors import Severity, Violation
from fusebox.controlplane.spec.loader import LoadedDocument, Path, located

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
    circuit_breaker_cache_size: int | None = None  # apps/actors; None: Dapr's default
    rate_limit: str | None = None  # extension
    retry_budget: str | None = None  # extension


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
    rate_limits: Mapping[str, RateLimitPolicy] = field(default_factory=_empty)
    retry_budgets: Mapping[str, RetryBudgetPolicy] = field(default_factory=_empty)
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
    """One validated document with the text and mapping it came from.

    Policy names in targets are kept as written: whether a name is defined is
    known only with the other documents of the namespace (Dapr's policies are
    global across documents), so ``fusebox.controlplane.resolve.check_documents``
    checks them. ``warnings`` are the document's own (a duplicate scope, a
    target without policies).
    """

    spec: ResiliencySpec
    yaml: str  # the document's own text (one document of a multi-document file)
    document: Mapping[str, Any]  # plain JSON-compatible data as loaded
    digest: str  # sha256 hex of the canonical JSON form of ``document``
    source: str = "<request>"  # the file name, "<stdin>" or "<request>"
    warnings: tuple[Violation, ...] = ()
    marks: LoadedDocument | None = field(default=None, repr=False, compare=False)

    def violation(
        self,
        path: Path,
        message: str,
        severity: Severity = Severity.ERROR,
        *,
        at_key: bool = False,
    ) -> Violation:
        """A violation located at ``path`` of this document (its line when known)."""
        return located(self.source, self.marks, path, message, severity, at_key=at_key)
