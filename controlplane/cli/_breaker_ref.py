"""What a breaker NAME on the command line refers to.

Two forms are accepted:

- the full key ``NAMESPACE/SPEC/KIND/TARGET[/METHOD]``
  (``default/myresiliency/app/order-processor/orders``), which names exactly
  one breaker;
- the display name Dapr prints (``order-processor:orders``, ``cart-42``,
  ``statestore``), matched against the server's list, optionally narrowed by
  ``-n NAMESPACE`` and ``--spec SPEC``. Several matches are an error that lists
  the candidates' full keys; none is an error that suggests the closest names.

With ``--all-methods`` NAME is a target instead (``parse_target_ref``): the
full key without a method, ``NAMESPACE/SPEC/KIND/TARGET``, or the target's name
(``order-processor``), found among the breakers and target overrides that exist.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import TargetKind
from fusebox.controlplane.cli._breaker_view import key_path, shown_name
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.v1 import breaker_pb2, policy_pb2

_KIND_NAMES = sorted(kind.value for kind in TargetKind)
#: How many close names an unknown breaker name suggests at most.
SUGGESTIONS = 3
_CLOSE = 0.6  # difflib's cutoff, as in fusebox.agent.trip.did_you_mean


@dataclass(frozen=True, slots=True)
class BreakerRef:
    """A NAME from the command line: a full key, or a display name with optional filters."""

    key: policy_pb2.BreakerKey | None
    display_name: str = ""
    namespace: str | None = None
    spec: str | None = None

    def describe(self) -> str:
        if self.key is not None:
            return key_path(self.key)
        where = [f'namespace "{self.namespace}"'] if self.namespace else []
        if self.spec:
            where.append(f'spec "{self.spec}"')
        return f'"{self.display_name}"' + (f" in {' and '.join(where)}" if where else "")


def parse_breaker_ref(
    text: str, namespace: str | None = None, spec: str | None = None
) -> BreakerRef:
    """Read NAME; raises ``CommandFailed`` (usage) for a malformed full key.

    >>> parse_breaker_ref("default/myresiliency/app/order-processor/orders").key.method
    'orders'
    >>> parse_breaker_ref("order-processor:orders", spec="myresiliency").display_name
    'order-processor:orders'
    """
    if "/" not in text:
        if not text:
            raise CommandFailed("a breaker NAME must not be empty", ExitCode.USAGE)
        return BreakerRef(key=None, display_name=text, namespace=namespace, spec=spec)
    parts = text.split("/")
    if len(parts) not in (4, 5) or not all(parts) or parts[2] not in _KIND_NAMES:
        raise CommandFailed(
            f"cannot read breaker {text!r}: expected a display name such as "
            "'order-processor:orders' or a full key NAMESPACE/SPEC/KIND/TARGET[/METHOD] with "
            f"KIND one of {', '.join(_KIND_NAMES)}",
            ExitCode.USAGE,
        )
    if (namespace and namespace != parts[0]) or (spec and spec != parts[1]):
        raise CommandFailed(
            f"breaker {text!r} is a full key; it contradicts -n/--spec", ExitCode.USAGE
        )
    method = parts[4] if len(parts) == 5 else ""
    key = BreakerKey(parts[0], parts[1], TargetKind(parts[2]), parts[3], method)
    return BreakerRef(key=key.to_proto())


def parse_target_ref(
    text: str, namespace: str | None = None, spec: str | None = None
) -> BreakerRef:
    """Read NAME given with ``--all-methods``; ``CommandFailed`` (usage) for one
    that names a single breaker or is malformed. The ref's key has no method.

    >>> parse_target_ref("default/myresiliency/app/order-processor").key.target
    'order-processor'
    >>> parse_target_ref("order-processor").display_name
    'order-processor'
    """
    if "/" not in text:
        if ":" in text:
            raise CommandFailed(
                f"with --all-methods, NAME is a target such as 'order-processor' or "
                f"NAMESPACE/SPEC/KIND/TARGET, not one breaker {text!r}", ExitCode.USAGE,
            )
        return parse_breaker_ref(text, namespace=namespace, spec=spec)
    if len(text.split("/")) == 5:
        raise CommandFailed(
            f"with --all-methods, NAME is a target NAMESPACE/SPEC/KIND/TARGET (every method of "
            f"it), not one breaker {text!r}: leave the method out", ExitCode.USAGE,
        )
    return parse_breaker_ref(text, namespace=namespace, spec=spec)


def the_one_target(ref: BreakerRef, listed: breaker_pb2.ListBreakersResponse,
                   hint: str = "") -> policy_pb2.BreakerKey:
    """The target a plain target name means: the one (namespace, spec, kind) the
    listed breakers and target overrides of that name share. ``CommandFailed``
    (exit 1) for none, suggesting the closest target names, or several, listing them."""
    keys = [b.key for b in listed.breakers] + [r.target for r in listed.target_overrides]
    wanted = [
        k for k in keys
        if (not ref.namespace or k.namespace == ref.namespace)
        and (not ref.spec or k.spec == ref.spec)
    ]
    targets = {_target_key(k).SerializeToString(deterministic=True): _target_key(k)
               for k in wanted if k.target == ref.display_name}
    found = sorted(targets.values(), key=_target_path)
    if not found:
        suffix = f"; {hint}" if hint else ""
        raise CommandFailed(
            f"no circuit breaker of a target named {ref.describe()}"
            f"{suggestions(ref.display_name, [k.target for k in wanted])}{suffix}"
        )
    if len(found) > 1:
        raise CommandFailed(
            f"{ref.describe()} is a target of {len(found)} specs or kinds; name one as "
            "NAMESPACE/SPEC/KIND/TARGET, or narrow with -n/--spec",
            details=[f"  {_target_path(k)}" for k in found],
        )
    return found[0]


def _target_key(key: policy_pb2.BreakerKey) -> policy_pb2.BreakerKey:
    return policy_pb2.BreakerKey(namespace=key.namespace, spec=key.spec, kind=key.kind,
                                 target=key.target)


def _target_path(key: policy_pb2.BreakerKey) -> str:
    return key_path(_target_key(key))


def list_request_for(ref: BreakerRef) -> breaker_pb2.ListBreakersRequest:
    """The ``ListBreakers`` request whose answer contains every candidate for ``ref``."""
    return breaker_pb2.ListBreakersRequest(namespace=ref.namespace or "")


def matching_breakers(
    ref: BreakerRef, breakers: Sequence[breaker_pb2.Breaker]
) -> list[breaker_pb2.Breaker]:
    """The listed breakers ``ref`` (a display name) may mean, sorted by full key."""
    found = [
        b
        for b in breakers
        if shown_name(b) == ref.display_name
        and (not ref.namespace or b.key.namespace == ref.namespace)
        and (not ref.spec or b.key.spec == ref.spec)
    ]
    return sorted(found, key=lambda b: key_path(b.key))


def closest_names(word: str, candidates: Iterable[str], n: int = SUGGESTIONS) -> list[str]:
    """Up to ``n`` candidates close to ``word``, closest first (difflib's ratio, as
    the spec validator's "did you mean"); one that differs only in case comes first.

    The whole ``/``-separated parts shared by the word and every candidate
    (``default/myresiliency/app/`` of full keys) are left out of the comparison:
    they would make any two keys look alike. Equally close names come in order.

    >>> closest_names("order-procesor:orders", ["order-processor:orders", "cart"])
    ['order-processor:orders']
    >>> closest_names("default/s/app/order-procesor", ["default/s/app/order-processor",
    ...                                                "default/s/app/inventory"])
    ['default/s/app/order-processor']
    """
    unique = sorted(set(candidates))
    same_case = [c for c in unique if c.lower() == word.lower() and c != word]
    shared = _shared_parts_length([word, *unique])
    scored = []
    for candidate in unique:
        matcher = difflib.SequenceMatcher(None, word[shared:], candidate[shared:])
        if matcher.ratio() >= _CLOSE:
            scored.append((-matcher.ratio(), candidate))
    close = [candidate for _, candidate in sorted(scored)]
    return (same_case + [c for c in close if c not in same_case])[:n]


def _shared_parts_length(texts: Sequence[str]) -> int:
    """The length of the leading ``/``-separated parts (with their ``/``) all ``texts`` share."""
    length = 0
    for parts in itertools.zip_longest(*(text.split("/")[:-1] for text in texts)):
        if parts[0] is None or any(part != parts[0] for part in parts):
            break
        length += len(parts[0]) + 1
    return length


def suggestions(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean "a"?)``, `` (did you mean "a", "b" or "c"?)``, or "" when nothing is close.

    >>> suggestions("cart-4", ["cart-42", "cart-43", "statestore"])
    ' (did you mean "cart-42" or "cart-43"?)'
    """
    close = [f'"{name}"' for name in closest_names(word, candidates)]
    if not close:
        return ""
    listed = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f" (did you mean {listed}?)"


def the_one_match(
    ref: BreakerRef, breakers: Sequence[breaker_pb2.Breaker], hint: str = ""
) -> breaker_pb2.Breaker:
    """The single breaker ``ref`` names; ``CommandFailed`` (exit 1) for none or several.

    None: the message suggests the closest display names among ``breakers``
    (those in the ref's namespace and spec), then ``hint``.
    """
    found = matching_breakers(ref, breakers)
    if not found:
        candidates = [
            shown_name(b) for b in breakers
            if (not ref.namespace or b.key.namespace == ref.namespace)
            and (not ref.spec or b.key.spec == ref.spec)
        ]
        suffix = f"; {hint}" if hint else ""
        raise CommandFailed(
            f"no circuit breaker named {ref.describe()}"
            f"{suggestions(ref.display_name, candidates)}{suffix}"
        )
    if len(found) > 1:
        raise CommandFailed(
            f"{ref.describe()} matches {len(found)} circuit breakers; "
            "name one by its full key, or narrow with -n/--spec",
            details=[f"  {key_path(b.key)}" for b in found],
        )
    return found[0]
