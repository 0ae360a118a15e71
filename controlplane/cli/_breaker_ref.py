"""What a breaker NAME on the command line refers to.

Two forms are accepted:

- the full key ``NAMESPACE/SPEC/KIND/TARGET[/METHOD]``
  (``default/myresiliency/app/order-processor/orders``), which names exactly
  one breaker;
- the display name Dapr prints (``order-processor:orders``, ``cart-42``,
  ``statestore``), matched against the server's list, optionally narrowed by
  ``-n NAMESPACE`` and ``--spec SPEC``. Several matches are an error that lists
  the candidates' full keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import TargetKind
from fusebox.controlplane.cli._breaker_view import key_path, shown_name
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.v1 import breaker_pb2, policy_pb2

_KIND_NAMES = sorted(kind.value for kind in TargetKind)


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


def the_one_match(ref: BreakerRef, breakers: Sequence[breaker_pb2.Breaker]) -> breaker_pb2.Breaker:
    """The single breaker ``ref`` names; ``CommandFailed`` (exit 1) for none or several."""
    found = matching_breakers(ref, breakers)
    if not found:
        raise CommandFailed(f"no circuit breaker named {ref.describe()}")
    if len(found) > 1:
        raise CommandFailed(
            f"{ref.describe()} matches {len(found)} circuit breakers; "
            "name one by its full key, or narrow with -n/--spec",
            details=[f"  {key_path(b.key)}" for b in found],
        )
    return found[0]
