"""What only the documents of a namespace together can tell: ``check_documents``.

Dapr builds one set of policies per app from every Resiliency document in the
app's scope (``FromConfigurations`` in dapr/dapr ``pkg/resiliency/resiliency.go``
decodes them one after the other into global maps), so a target may name a
policy that another document defines, and a later document takes over a
policy or a target entry of the same name. The checks, on the documents of an
input together with the stored documents of their namespaces:

- A target names a policy no document of the namespace defines (and no
  ``DaprBuiltIn…`` retry): an **error**. Dapr would silently apply no policy
  (and dereference a nil breaker for a component). When the stored documents
  are not known (offline ``fusebox validate``), a **warning** that says what
  could not be checked.
- The policy is defined only by documents whose ``scopes`` leave out some apps
  the naming document applies to: a **warning** (those apps get no policy).
- Another spec binds the same target, or defines the same policy differently,
  and their scopes meet: a **warning** that says which one wins.
- A stored document names a policy that the input removes from the
  namespace: a **warning** (deleting a spec can do the same; neither is refused).
- One input defines a (namespace, name) twice: an **error**.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from fusebox.agent.trip import did_you_mean
from fusebox.controlplane.resolve._builtins import BUILTIN_RETRIES
from fusebox.controlplane.resolve._resolver import merge_key
from fusebox.controlplane.spec.errors import Severity, Violation, in_document_order
from fusebox.controlplane.spec.loader import Path, render_path
from fusebox.controlplane.spec.model import ParsedDocument, ResiliencySpec, TargetRef
from fusebox.controlplane.spec.targets import SECTION_OF

_KEY_OF = {section: key for key, section in SECTION_OF.items()}
_TARGET_NOUNS = {"apps": "app target", "actors": "actor target", "components": "component target"}
_LAST_WINS = (
    "specs are merged in the order of their names and the last one wins, as the last "
    "document Dapr loads wins"
)

# The apps a spec applies to: a set of app-ids, or None for every app.
Apps = frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _Reference:
    path: Path  # e.g. ("spec", "targets", "apps", "order-processor", "retry")
    key: str  # "retry"
    section: str  # "retries"
    name: str


def check_documents(
    documents: Sequence[ParsedDocument], stored: Iterable[ResiliencySpec] | None
) -> list[Violation]:
    """Errors and warnings of ``documents`` applied together over ``stored``.

    ``stored`` holds the specs already stored in the documents' namespaces
    (a document of the input replaces the stored spec of the same name); None
    when they are not known, which turns "defined nowhere" into a warning that
    says what could not be checked. The documents' own warnings are not
    repeated. Sorted by source and position.
    """
    known = stored is not None
    stored_by_key = {s.key: s for s in stored or ()}
    effective = dict(stored_by_key)
    effective.update((d.spec.key, d.spec) for d in documents)
    peers: dict[str, list[ResiliencySpec]] = defaultdict(list)
    for spec in effective.values():
        peers[spec.namespace].append(spec)
    origins = {d.spec.key: d.source for d in documents}

    violations = list(_duplicates(documents))
    for document in documents:
        namespace = peers[document.spec.namespace]
        violations.extend(_references_found(document, namespace, known, origins))
        violations.extend(_targets_taken_over(document, namespace, origins))
        violations.extend(_policies_taken_over(document, namespace, origins))
    if known:
        violations.extend(_stored_references_removed(documents, stored_by_key, peers))
    return in_document_order(violations)


# ---- what a spec names, defines and applies to -------------------------------


def _references(spec: ResiliencySpec) -> Iterator[_Reference]:
    def named(path: Path, ref: TargetRef) -> Iterator[_Reference]:
        for key, name in (
            ("timeout", ref.timeout),
            ("retry", ref.retry),
            ("circuitBreaker", ref.circuit_breaker),
            ("fallback", ref.fallback),
            ("rateLimit", ref.rate_limit),
            ("retryBudget", ref.retry_budget),
        ):
            if name is not None:
                yield _Reference((*path, key), key, SECTION_OF[key], name)

    for kind, entries in (("apps", spec.apps), ("actors", spec.actors)):
        for target, ref in entries.items():
            yield from named(("spec", "targets", kind, target), ref)
    for component, directions in spec.components.items():
        for direction, written in (
            ("outbound", directions.outbound), ("inbound", directions.inbound)
        ):
            if written is not None:
                yield from named(("spec", "targets", "components", component, direction), written)


def _policies(spec: ResiliencySpec, section: str) -> Mapping[str, object]:
    return {
        "timeouts": spec.timeouts,
        "retries": spec.retries,
        "circuitBreakers": spec.circuit_breakers,
        "fallbacks": spec.fallbacks,
        "rateLimits": spec.rate_limits,
        "retryBudgets": spec.retry_budgets,
    }[section]


def _targets(spec: ResiliencySpec, kind: str) -> Mapping[str, object]:
    return {"apps": spec.apps, "actors": spec.actors, "components": spec.components}[kind]


def _apps(spec: ResiliencySpec) -> Apps:
    return frozenset(spec.scopes) or None


def _meet(a: ResiliencySpec, b: ResiliencySpec) -> bool:
    """Whether some app loads both specs."""
    first, second = _apps(a), _apps(b)
    return first is None or second is None or bool(first & second)


def _left_out(referrer: ResiliencySpec, providers: Sequence[ResiliencySpec]) -> str:
    """The apps ``referrer`` applies to that no provider applies to, in words ("" if none)."""
    scopes = [_apps(p) for p in providers]
    covered: set[str] = set()
    for apps in scopes:
        if apps is None:
            return ""
        covered |= apps
    wanted = _apps(referrer)
    if wanted is None:
        return "every app-id except " + ", ".join(sorted(covered))
    return ", ".join(sorted(wanted - covered))


def _describe(spec: ResiliencySpec, origins: Mapping[tuple[str, str], str]) -> str:
    where = origins.get(spec.key, "stored")
    return f"spec {spec.namespace}/{spec.name} ({where})"


def _describe_all(specs: Iterable[ResiliencySpec], origins: Mapping[tuple[str, str], str]) -> str:
    return ", ".join(_describe(s, origins) for s in sorted(specs, key=merge_key))


def _scoped(spec: ResiliencySpec, origins: Mapping[tuple[str, str], str]) -> str:
    scopes = ", ".join(spec.scopes) if spec.scopes else "every app"
    return f"{_describe(spec, origins)}, scopes: {scopes}"


# ---- the checks ---------------------------------------------------------------


def _duplicates(documents: Sequence[ParsedDocument]) -> Iterator[Violation]:
    first: dict[tuple[str, str], ParsedDocument] = {}
    for document in documents:
        earlier = first.setdefault(document.spec.key, document)
        if earlier is document:
            continue
        namespace, name = document.spec.key
        yield document.violation(
            ("metadata", "name"),
            f"spec {namespace}/{name} is also defined in {earlier.source}; "
            "one input may define a spec once",
        )


def _references_found(
    document: ParsedDocument,
    namespace: Sequence[ResiliencySpec],
    known: bool,
    origins: Mapping[tuple[str, str], str],
) -> Iterator[Violation]:
    spec = document.spec
    for ref in _references(spec):
        if ref.section == "retries" and ref.name in BUILTIN_RETRIES:
            continue  # Dapr registers the built-in retries before reading any spec
        providers = [p for p in namespace if ref.name in _policies(p, ref.section)]
        if not providers:
            yield _defined_nowhere(document, ref, namespace, known)
            continue
        left_out = _left_out(spec, providers)
        if left_out:
            unless = "" if known else (
                f" (unless a Resiliency document of namespace {spec.namespace!r} that is not "
                "among the files given defines it for them)"
            )
            yield document.violation(
                ref.path,
                f"{ref.key} policy {ref.name!r} is defined only by "
                + "; ".join(_scoped(p, origins) for p in sorted(providers, key=merge_key))
                + f"; this spec also applies to {left_out}, for which Dapr finds no such "
                f"policy: this target gets no {ref.key} there{unless}",
                Severity.WARNING,
            )


def _defined_nowhere(
    document: ParsedDocument,
    ref: _Reference,
    namespace: Sequence[ResiliencySpec],
    known: bool,
) -> Violation:
    names = sorted({n for p in namespace for n in _policies(p, ref.section)})
    candidates = [*names, *BUILTIN_RETRIES] if ref.section == "retries" else names
    hint = did_you_mean(ref.name, candidates)
    ns = document.spec.namespace
    if not known:
        return document.violation(
            ref.path,
            f"{ref.key} policy {ref.name!r} is not defined in the files given{hint}; it must "
            f"be defined in another Resiliency document of namespace {ns!r}, or apply will "
            "refuse it",
            Severity.WARNING,
        )
    listing = (
        f"defined {ref.section}: {', '.join(names)}" if names
        else f"no document of the namespace defines any {ref.section}"
    )
    return document.violation(
        ref.path,
        f"{ref.key} policy {ref.name!r} is not defined in any Resiliency document of namespace "
        f"{ns!r}{hint}; {listing}",
    )


def _targets_taken_over(
    document: ParsedDocument,
    namespace: Sequence[ResiliencySpec],
    origins: Mapping[tuple[str, str], str],
) -> Iterator[Violation]:
    spec = document.spec
    for kind, noun in _TARGET_NOUNS.items():
        for target in _targets(spec, kind):
            rivals = [
                p for p in namespace
                if p.key != spec.key and target in _targets(p, kind) and _meet(spec, p)
            ]
            if rivals:
                yield document.violation(
                    ("spec", "targets", kind, target),
                    _taken_over(f"{noun} {target!r}", "bound", "entry", spec, rivals, origins)
                    + " (a target entry is replaced whole, never merged field by field)",
                    Severity.WARNING,
                    at_key=True,
                )


def _policies_taken_over(
    document: ParsedDocument,
    namespace: Sequence[ResiliencySpec],
    origins: Mapping[tuple[str, str], str],
) -> Iterator[Violation]:
    spec = document.spec
    for section, key in _KEY_OF.items():
        for name, policy in _policies(spec, section).items():
            rivals = [
                p for p in namespace
                if p.key != spec.key and _meet(spec, p)
                and _policies(p, section).get(name, policy) != policy
            ]
            if rivals:
                yield document.violation(
                    ("spec", "policies", section, name),
                    _taken_over(f"{key} policy {name!r}", "defined, differently,", "definition",
                                spec, rivals, origins)
                    + f", for every target naming {name!r} in any document",
                    Severity.WARNING,
                    at_key=True,
                )


def _taken_over(
    what: str,
    verb: str,
    thing: str,
    spec: ResiliencySpec,
    rivals: Sequence[ResiliencySpec],
    origins: Mapping[tuple[str, str], str],
) -> str:
    later = [r for r in rivals if merge_key(r) > merge_key(spec)]
    if later:
        winner = max(later, key=merge_key)
        return (
            f"{what} is also {verb} by {_describe_all(rivals, origins)}; for the apps they "
            f"share, {_describe(winner, origins)} takes it over ({_LAST_WINS}), not this spec"
        )
    return (
        f"{what} is also {verb} by {_describe_all(rivals, origins)}; for the apps they share, "
        f"this spec's {thing} wins ({_LAST_WINS})"
    )


def _stored_references_removed(
    documents: Sequence[ParsedDocument],
    stored_by_key: Mapping[tuple[str, str], ResiliencySpec],
    peers: Mapping[str, Sequence[ResiliencySpec]],
) -> Iterator[Violation]:
    replaced = {d.spec.key for d in documents}
    for spec in stored_by_key.values():
        if spec.key in replaced or spec.namespace not in {d.spec.namespace for d in documents}:
            continue
        for ref in _references(spec):
            if any(ref.name in _policies(p, ref.section) for p in peers[spec.namespace]):
                continue
            for document in documents:
                before = stored_by_key.get(document.spec.key)
                if before is None or ref.name not in _policies(before, ref.section):
                    continue
                yield document.violation(
                    ("spec", "policies", ref.section),
                    f"{ref.key} policy {ref.name!r} is no longer defined by any Resiliency "
                    f"document of namespace {spec.namespace!r} once this is applied, but spec "
                    f"{spec.namespace}/{spec.name} (stored) names it at {render_path(ref.path)}: "
                    f"that target then gets no {ref.key} (Dapr ignores a name it cannot find); "
                    "keep the policy, or change that spec",
                    Severity.WARNING,
                )
