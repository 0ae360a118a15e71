"""Policy resolution: scopes, Dapr's default lookup order, built-in retries, merging."""

from __future__ import annotations

import dataclasses
import textwrap
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusebox.agent.policy import (
    BackoffKind,
    BreakerQuorum,
    BreakerScope,
    CircuitBreakerPolicy,
    Direction,
    FallbackPolicy,
    FallbackResponse,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
    TimeoutPolicy,
    resolved_from_proto,
    resolved_to_proto,
)
from fusebox.controlplane.resolve import BUILTIN_RETRIES, COMPONENT_TYPES, resolve_policies
from fusebox.controlplane.spec import parse_documents
from fusebox.controlplane.spec.model import ComponentTargets, ResiliencySpec, TargetRef

NS = "default"


def spec(
    name: str = "resiliency",
    *,
    namespace: str = NS,
    scopes: tuple[str, ...] = (),
    timeouts: dict[str, float] | None = None,
    retries: dict[str, RetryPolicy] | None = None,
    breakers: dict[str, CircuitBreakerPolicy] | None = None,
    fallbacks: dict[str, FallbackPolicy] | None = None,
    apps: dict[str, TargetRef] | None = None,
    actors: dict[str, TargetRef] | None = None,
    components: dict[str, ComponentTargets] | None = None,
) -> ResiliencySpec:
    return ResiliencySpec(
        namespace=namespace,
        name=name,
        scopes=scopes,
        timeouts=MappingProxyType(
            {n: TimeoutPolicy(n, seconds) for n, seconds in (timeouts or {}).items()}
        ),
        retries=MappingProxyType(dict(retries or {})),
        circuit_breakers=MappingProxyType(dict(breakers or {})),
        fallbacks=MappingProxyType(dict(fallbacks or {})),
        apps=MappingProxyType(dict(apps or {})),
        actors=MappingProxyType(dict(actors or {})),
        components=MappingProxyType(dict(components or {})),
    )


def retries(*names: str, max_retries: int = 7) -> dict[str, RetryPolicy]:
    return {n: RetryPolicy(n, max_retries=max_retries) for n in names}


def breakers(*names: str) -> dict[str, CircuitBreakerPolicy]:
    return {n: CircuitBreakerPolicy(n) for n in names}


def names(t: TargetPolicy | None) -> tuple[str | None, str | None, str | None]:
    """(timeout, retry, circuit breaker) policy names bound to a target."""
    assert t is not None
    return (
        t.timeout.name if t.timeout else None,
        t.retry.name if t.retry else None,
        t.circuit_breaker.name if t.circuit_breaker else None,
    )


RETRY_FOREVER = RetryPolicy("retryForever", BackoffKind.CONSTANT, max_interval=5.0, max_retries=-1)
SIMPLE_CB = CircuitBreakerPolicy(
    "simpleCB", max_requests=1, timeout=5.0, trip="consecutiveFailures >= 5"
)
SEED = spec(
    "myresiliency",
    scopes=("checkout",),
    retries={"retryForever": RETRY_FOREVER},
    breakers={"simpleCB": SIMPLE_CB},
    apps={"order-processor": TargetRef(retry="retryForever", circuit_breaker="simpleCB")},
)


# ---- the seed quickstart ----------------------------------------------------


def test_seed_spec_gives_checkout_one_app_target_with_both_policies() -> None:
    resolved = resolve_policies([SEED], NS, "checkout")

    assert resolved.targets == (
        TargetPolicy(
            kind=TargetKind.APP,
            name="order-processor",
            retry=RETRY_FOREVER,
            circuit_breaker=SIMPLE_CB,
            circuit_breaker_cache_size=100,
            spec_namespace=NS,
            spec_name="myresiliency",
        ),
    )
    assert resolved.lookup(TargetKind.APP, "order-processor") == resolved.targets[0]
    assert resolved.digest == ""


def test_seed_spec_gives_an_app_outside_its_scopes_nothing() -> None:
    resolved = resolve_policies([SEED], NS, "other-app")

    assert resolved.targets == ()
    assert resolved.lookup(TargetKind.APP, "order-processor") is None
    assert dict(resolved.builtin_retries) == dict(BUILTIN_RETRIES)


def test_a_spec_without_scopes_applies_to_every_app() -> None:
    unscoped = dataclasses.replace(SEED, scopes=())

    for app_id in ("checkout", "other-app"):
        assert len(resolve_policies([unscoped], NS, app_id).targets) == 1


def test_specs_of_other_namespaces_are_ignored() -> None:
    prod = dataclasses.replace(SEED, namespace="prod", scopes=())

    assert resolve_policies([prod], NS, "checkout").targets == ()
    resolved = resolve_policies([prod], "prod", "checkout")
    assert resolved.namespace == "prod"
    assert resolved.targets[0].spec_namespace == "prod"


# ---- explicit targets -------------------------------------------------------


def test_actor_targets_keep_scope_and_use_daprs_actor_cache_size() -> None:
    s = spec(
        breakers=breakers("cb"),
        actors={
            "Cart": TargetRef(circuit_breaker="cb", circuit_breaker_scope=BreakerScope.BOTH),
            "Order": TargetRef(
                circuit_breaker="cb",
                circuit_breaker_scope=BreakerScope.ID,
                circuit_breaker_cache_size=7,
            ),
        },
    )
    resolved = resolve_policies([s], NS, "app")

    cart = resolved.lookup(TargetKind.ACTOR, "Cart")
    order = resolved.lookup(TargetKind.ACTOR, "Order")
    assert cart is not None and order is not None
    assert (cart.circuit_breaker_scope, cart.circuit_breaker_cache_size) == (
        BreakerScope.BOTH,
        5000,
    )
    assert (order.circuit_breaker_scope, order.circuit_breaker_cache_size) == (BreakerScope.ID, 7)


def test_component_targets_bind_each_direction_and_fallbacks() -> None:
    fallback = FallbackPolicy("cached", response=FallbackResponse(body=b"{}"))
    s = spec(
        timeouts={"fast": 0.5},
        retries=retries("pubsubRetry"),
        fallbacks={"cached": fallback},
        components={
            "orders": ComponentTargets(
                outbound=TargetRef(timeout="fast", fallback="cached"),
                inbound=TargetRef(retry="pubsubRetry"),
            )
        },
    )
    resolved = resolve_policies([s], NS, "app")

    out = resolved.lookup(TargetKind.COMPONENT, "orders", Direction.OUTBOUND)
    inbound = resolved.lookup(TargetKind.COMPONENT, "orders", Direction.INBOUND)
    assert names(out) == ("fast", None, None) and out is not None and out.fallback == fallback
    assert names(inbound) == (None, "pubsubRetry", None)


# ---- Dapr's Default…Policy lookup order ---------------------------------------


@pytest.mark.parametrize(
    ("defined", "expected"),
    [
        (("DefaultAppRetryPolicy", "DefaultRetryPolicy"), "DefaultAppRetryPolicy"),
        (("DefaultRetryPolicy",), "DefaultRetryPolicy"),
        (("DefaultActorRetryPolicy", "DefaultRetryPolicy"), "DefaultRetryPolicy"),
    ],
)
def test_app_default_lookup_order(defined: tuple[str, ...], expected: str) -> None:
    resolved = resolve_policies([spec(retries=retries(*defined))], NS, "app")

    slot = resolved.lookup(TargetKind.APP, "any-app")
    assert slot is not None and slot.is_default and slot.name == ""
    assert names(slot) == (None, expected, None)


@pytest.mark.parametrize(
    ("defined", "expected"),
    [
        (
            ("DefaultActorCircuitBreakerPolicy", "DefaultCircuitBreakerPolicy"),
            "DefaultActorCircuitBreakerPolicy",
        ),
        (
            ("DefaultCircuitBreakerPolicy", "DefaultAppCircuitBreakerPolicy"),
            "DefaultCircuitBreakerPolicy",
        ),
    ],
)
def test_actor_default_lookup_order_and_type_scoped_breaker(
    defined: tuple[str, ...], expected: str
) -> None:
    resolved = resolve_policies([spec(breakers=breakers(*defined))], NS, "app")

    slot = resolved.lookup(TargetKind.ACTOR, "AnyActor")
    assert names(slot) == (None, None, expected)
    assert slot is not None and slot.circuit_breaker_scope is BreakerScope.TYPE


COMPONENT_CHAIN = (
    "DefaultStatestoreComponentOutboundRetryPolicy",
    "DefaultComponentOutboundRetryPolicy",
    "DefaultComponentRetryPolicy",
    "DefaultRetryPolicy",
)


@pytest.mark.parametrize("level", range(len(COMPONENT_CHAIN)))
def test_component_default_lookup_order(level: int) -> None:
    # Define the chain from `level` down: the most specific defined one wins.
    resolved = resolve_policies([spec(retries=retries(*COMPONENT_CHAIN[level:]))], NS, "app")

    slot = resolved.lookup(TargetKind.COMPONENT, "statestore", Direction.OUTBOUND, "state")
    assert names(slot) == (None, COMPONENT_CHAIN[level], None)


def test_each_policy_kind_is_looked_up_separately() -> None:
    s = spec(
        timeouts={"DefaultTimeoutPolicy": 3.0},
        retries=retries("DefaultAppRetryPolicy", "DefaultRetryPolicy"),
        breakers=breakers("DefaultComponentCircuitBreakerPolicy"),
    )
    resolved = resolve_policies([s], NS, "app")

    app = resolved.lookup(TargetKind.APP, "x")
    component = resolved.lookup(TargetKind.COMPONENT, "y", Direction.INBOUND)
    assert names(app) == ("DefaultTimeoutPolicy", "DefaultAppRetryPolicy", None)
    assert names(component) == (
        "DefaultTimeoutPolicy",
        "DefaultRetryPolicy",
        "DefaultComponentCircuitBreakerPolicy",
    )


def test_no_default_slots_without_default_policies() -> None:
    resolved = resolve_policies([spec(retries=retries("general"))], NS, "app")

    assert resolved.targets == ()


def test_direction_defaults_do_not_cross_directions() -> None:
    s = spec(retries=retries("DefaultComponentInboundRetryPolicy"))
    resolved = resolve_policies([s], NS, "app")

    assert resolved.lookup(TargetKind.COMPONENT, "c", Direction.OUTBOUND) is None
    inbound = resolved.lookup(TargetKind.COMPONENT, "c", Direction.INBOUND)
    assert names(inbound) == (None, "DefaultComponentInboundRetryPolicy", None)


def test_defaults_do_not_apply_to_a_target_with_an_entry() -> None:
    s = spec(
        timeouts={"DefaultTimeoutPolicy": 9.0},
        retries=retries("fast", "DefaultRetryPolicy"),
        apps={"billing": TargetRef(retry="fast")},
        components={"store": ComponentTargets(outbound=TargetRef(retry="fast"))},
    )
    resolved = resolve_policies([s], NS, "app")

    assert names(resolved.lookup(TargetKind.APP, "billing")) == (None, "fast", None)
    assert names(resolved.lookup(TargetKind.APP, "other")) == (
        "DefaultTimeoutPolicy",
        "DefaultRetryPolicy",
        None,
    )
    # Dapr finds the component's entry for the direction it does not configure
    # too, and applies no defaults to it.
    inbound = resolved.lookup(TargetKind.COMPONENT, "store", Direction.INBOUND)
    assert inbound is not None and not inbound.is_default
    assert names(inbound) == (None, None, None)


# ---- typed component defaults ---------------------------------------------


def test_typed_component_defaults_get_one_slot_per_type() -> None:
    s = spec(
        timeouts={"DefaultComponentTimeoutPolicy": 2.0},
        retries=retries(
            "DefaultStatestoreComponentOutboundRetryPolicy",
            "DefaultPubsubComponentInboundRetryPolicy",
        ),
        breakers=breakers("DefaultBindingComponentOutboundCircuitBreakerPolicy"),
    )
    resolved = resolve_policies([s], NS, "app")

    typed = {(t.direction, t.component_type) for t in resolved.targets if t.component_type}
    assert typed == {
        (Direction.OUTBOUND, "state"),
        (Direction.INBOUND, "pubsub"),
        (Direction.OUTBOUND, "bindings"),
    }
    # A typed slot is complete: kinds without a typed name come from the chain.
    state = resolved.lookup(TargetKind.COMPONENT, "s", Direction.OUTBOUND, "state")
    assert names(state) == (
        "DefaultComponentTimeoutPolicy",
        "DefaultStatestoreComponentOutboundRetryPolicy",
        None,
    )
    binding = resolved.lookup(TargetKind.COMPONENT, "b", Direction.OUTBOUND, "bindings")
    assert names(binding) == (
        "DefaultComponentTimeoutPolicy",
        None,
        "DefaultBindingComponentOutboundCircuitBreakerPolicy",
    )
    # Other types, and a typed name's other direction, get the untyped slot.
    for direction, component_type in (
        (Direction.OUTBOUND, "pubsub"),
        (Direction.INBOUND, "state"),
        (Direction.OUTBOUND, ""),
    ):
        slot = resolved.lookup(TargetKind.COMPONENT, "c", direction, component_type)
        assert names(slot) == ("DefaultComponentTimeoutPolicy", None, None)


def test_every_dapr_component_type_has_a_typed_slot() -> None:
    words = sorted(COMPONENT_TYPES)
    s = spec(retries=retries(*(f"Default{w}ComponentOutboundRetryPolicy" for w in words)))
    resolved = resolve_policies([s], NS, "app")

    for word, prefix in COMPONENT_TYPES.items():
        slot = resolved.lookup(TargetKind.COMPONENT, "c", Direction.OUTBOUND, prefix)
        assert names(slot) == (None, f"Default{word}ComponentOutboundRetryPolicy", None)


def test_names_dapr_never_looks_up_create_no_slot() -> None:
    # Typed defaults exist only with a direction; Dapr's names are case-sensitive.
    s = spec(retries=retries("DefaultStatestoreComponentRetryPolicy", "defaultRetryPolicy"))

    assert resolve_policies([s], NS, "app").targets == ()


def test_dapr_docs_default_policies_example() -> None:
    """The worked example of Dapr's "Default resiliency policies" page."""
    s = spec(
        retries=retries(
            "DefaultRetryPolicy",
            "DefaultAppRetryPolicy",
            "DefaultActorRetryPolicy",
            "DefaultComponentInboundRetryPolicy",
            "DefaultStatestoreComponentOutboundRetryPolicy",
            "fastRetries",
            "retryForever",
        ),
        apps={"appA": TargetRef(retry="fastRetries"), "appB": TargetRef(retry="retryForever")},
        actors={"EventActor": TargetRef(retry="retryForever")},
        components={"actorstore": ComponentTargets(outbound=TargetRef(retry="fastRetries"))},
    )
    r = resolve_policies([s], NS, "app")

    def retry_of(t: TargetPolicy | None) -> str | None:
        return names(t)[1]

    out, inbound = Direction.OUTBOUND, Direction.INBOUND
    assert retry_of(r.lookup(TargetKind.APP, "appA")) == "fastRetries"
    assert retry_of(r.lookup(TargetKind.APP, "appB")) == "retryForever"
    assert retry_of(r.lookup(TargetKind.APP, "appC")) == "DefaultAppRetryPolicy"
    assert retry_of(r.lookup(TargetKind.COMPONENT, "pubsub", out, "pubsub")) == (
        "DefaultRetryPolicy"
    )
    assert retry_of(r.lookup(TargetKind.COMPONENT, "pubsub", inbound, "pubsub")) == (
        "DefaultComponentInboundRetryPolicy"
    )
    assert retry_of(r.lookup(TargetKind.COMPONENT, "statestore", out, "state")) == (
        "DefaultStatestoreComponentOutboundRetryPolicy"
    )
    assert retry_of(r.lookup(TargetKind.COMPONENT, "actorstore", out, "state")) == "fastRetries"
    assert retry_of(r.lookup(TargetKind.ACTOR, "EventActor")) == "retryForever"
    assert retry_of(r.lookup(TargetKind.ACTOR, "SummaryActor")) == "DefaultActorRetryPolicy"


# ---- built-in retries -------------------------------------------------------


def test_builtin_retries_have_daprs_values() -> None:
    b = resolve_policies([], NS, "app").builtin_retries

    assert sorted(b) == [
        "DaprBuiltInActorNotFoundRetries",
        "DaprBuiltInActorReminderRetries",
        "DaprBuiltInActorRetries",
        "DaprBuiltInInitializationRetries",
        "DaprBuiltInServiceRetries",
    ]
    for name in ("DaprBuiltInServiceRetries", "DaprBuiltInActorRetries"):
        assert (b[name].backoff, b[name].duration, b[name].max_retries) == (
            BackoffKind.CONSTANT,
            1.0,
            3,
        )
    not_found = b["DaprBuiltInActorNotFoundRetries"]
    assert (not_found.backoff, not_found.duration, not_found.max_retries) == (
        BackoffKind.CONSTANT,
        1.0,
        5,
    )
    reminder = b["DaprBuiltInActorReminderRetries"]
    assert reminder.backoff is BackoffKind.EXPONENTIAL
    assert (reminder.initial_interval, reminder.max_interval, reminder.max_elapsed_time) == (
        0.5,
        60.0,
        900.0,
    )
    init = b["DaprBuiltInInitializationRetries"]
    assert (init.backoff, init.initial_interval, init.max_interval) == (
        BackoffKind.EXPONENTIAL,
        0.5,
        1.0,
    )
    assert (init.max_elapsed_time, init.max_retries) == (10.0, 3)
    assert all(policy.name == name for name, policy in b.items())


def test_a_spec_in_scope_overrides_a_builtin_retry() -> None:
    override = RetryPolicy("DaprBuiltInServiceRetries", duration=5.0, max_retries=10)
    scoped = spec(scopes=("checkout",), retries={override.name: override})

    assert resolve_policies([scoped], NS, "checkout").builtin_retries[override.name] == override
    assert (
        resolve_policies([scoped], NS, "other").builtin_retries[override.name]
        == (BUILTIN_RETRIES[override.name])
    )


@pytest.mark.parametrize(("written", "resolved"), [(0, 3), (2, 3), (3, 3), (8, 8), (-1, -1)])
def test_a_builtin_override_cannot_retry_fewer_than_3_times(written: int, resolved: int) -> None:
    s = spec(retries=retries("DaprBuiltInActorRetries", max_retries=written))

    got = resolve_policies([s], NS, "app").builtin_retries["DaprBuiltInActorRetries"]
    assert got.max_retries == resolved


def test_actor_not_found_retries_cannot_be_overridden() -> None:
    s = spec(
        retries=retries("DaprBuiltInActorNotFoundRetries", max_retries=50),
        apps={"x": TargetRef(retry="DaprBuiltInActorNotFoundRetries")},
    )
    resolved = resolve_policies([s], NS, "app")

    builtin = BUILTIN_RETRIES["DaprBuiltInActorNotFoundRetries"]
    assert resolved.builtin_retries["DaprBuiltInActorNotFoundRetries"] == builtin
    x = resolved.lookup(TargetKind.APP, "x")
    assert x is not None and x.retry == builtin


def test_a_target_naming_an_overridden_builtin_gets_the_override() -> None:
    s = spec(
        retries=retries("DaprBuiltInServiceRetries", max_retries=1),
        apps={"x": TargetRef(retry="DaprBuiltInServiceRetries")},
    )
    x = resolve_policies([s], NS, "app").lookup(TargetKind.APP, "x")

    assert x is not None and x.retry is not None and x.retry.max_retries == 3


# ---- several specs ----------------------------------------------------------


def test_the_spec_last_in_name_order_wins_a_policy_name() -> None:
    a = spec("a", retries=retries("general", max_retries=1), apps={"x": TargetRef(retry="general")})
    b = spec("b", retries=retries("general", max_retries=2))

    for order in ([a, b], [b, a]):
        x = resolve_policies(order, NS, "app").lookup(TargetKind.APP, "x")
        # Dapr's maps are global: the target of "a" uses "b"'s policy.
        assert x is not None and x.retry is not None and x.retry.max_retries == 2
        assert x.spec_name == "a"


def test_the_spec_last_in_name_order_wins_a_target_entry_whole() -> None:
    a_inbound = ComponentTargets(inbound=TargetRef(timeout="t"))
    b_outbound = ComponentTargets(outbound=TargetRef(retry="r"))
    a = spec("a", timeouts={"t": 1.0}, components={"c": a_inbound})
    b = spec("b", retries=retries("r"), components={"c": b_outbound})
    resolved = resolve_policies([b, a], NS, "app")

    out = resolved.lookup(TargetKind.COMPONENT, "c", Direction.OUTBOUND)
    inbound = resolved.lookup(TargetKind.COMPONENT, "c", Direction.INBOUND)
    assert names(out) == (None, "r", None) and out is not None and out.spec_name == "b"
    # "b"'s entry replaced "a"'s for both directions, as Dapr replaces it.
    assert names(inbound) == (None, None, None) and inbound is not None
    assert inbound.spec_name == "b"


def test_targets_and_defaults_from_several_specs_combine() -> None:
    a = spec("a", scopes=("app",), retries=retries("r"), apps={"x": TargetRef(retry="r")})
    b = spec("b", breakers=breakers("DefaultCircuitBreakerPolicy"))
    c = spec("c", scopes=("someone-else",), retries=retries("DefaultRetryPolicy"))
    resolved = resolve_policies([c, b, a], NS, "app")

    assert [(t.kind, t.name, t.is_default, t.spec_name) for t in resolved.targets] == [
        (TargetKind.ACTOR, "", True, "b"),
        (TargetKind.APP, "x", False, "a"),
        (TargetKind.APP, "", True, "b"),
        (TargetKind.COMPONENT, "", True, "b"),
        (TargetKind.COMPONENT, "", True, "b"),
    ]
    assert names(resolved.lookup(TargetKind.APP, "y")) == (
        None,
        None,
        "DefaultCircuitBreakerPolicy",
    )


def test_a_default_slot_is_named_after_the_spec_of_its_breaker() -> None:
    # The spec is part of a breaker's identity: the breaker's own spec names it.
    a = spec("a", timeouts={"DefaultTimeoutPolicy": 1.0}, retries=retries("DefaultRetryPolicy"))
    b = spec("b", breakers=breakers("DefaultCircuitBreakerPolicy"))
    z = spec("z", retries=retries("DefaultAppRetryPolicy"))
    resolved = resolve_policies([a, b, z], NS, "app")

    app = resolved.lookup(TargetKind.APP, "x")
    assert app is not None and app.spec_name == "b"
    without_breaker = resolve_policies([a, z], NS, "app").lookup(TargetKind.APP, "x")
    assert without_breaker is not None and without_breaker.spec_name == "z"


def test_two_specs_with_the_same_name_are_refused() -> None:
    with pytest.raises(ValueError, match="default/dup"):
        resolve_policies([spec("dup"), spec("dup", scopes=("app",))], NS, "app")


MERGE_SPECS = [
    spec(
        "alpha",
        timeouts={"t": 1.0, "DefaultComponentOutboundTimeoutPolicy": 4.0},
        retries=retries("general", "DefaultRetryPolicy", max_retries=1),
        apps={"orders": TargetRef(retry="general", timeout="t"), "cart": TargetRef(timeout="t")},
    ),
    spec(
        "beta",
        retries=retries("general", "DaprBuiltInServiceRetries", max_retries=4),
        breakers=breakers("cb", "DefaultActorCircuitBreakerPolicy"),
        apps={"orders": TargetRef(circuit_breaker="cb")},
        actors={"Cart": TargetRef(circuit_breaker="cb", circuit_breaker_scope=BreakerScope.ID)},
    ),
    spec(
        "gamma",
        scopes=("app", "other"),
        retries=retries("DefaultPubsubComponentInboundRetryPolicy"),
        components={"pubsub": ComponentTargets(inbound=TargetRef(retry="general"))},
    ),
    spec("delta", namespace="prod", retries=retries("DefaultRetryPolicy", max_retries=9)),
]


@given(st.permutations(MERGE_SPECS))
def test_resolution_does_not_depend_on_spec_order(order: list[ResiliencySpec]) -> None:
    expected = resolve_policies(MERGE_SPECS, NS, "app")
    resolved = resolve_policies(order, NS, "app")

    assert resolved == expected
    assert resolved_to_proto(resolved).digest == resolved_to_proto(expected).digest


def test_merged_result_survives_the_wire() -> None:
    resolved = resolve_policies(MERGE_SPECS, NS, "app")
    back = resolved_from_proto(resolved_to_proto(resolved))

    assert back.targets == resolved.targets
    assert dict(back.builtin_retries) == dict(resolved.builtin_retries)


def test_a_breaker_quorum_reaches_the_resolved_target_and_the_wire() -> None:
    shared = dataclasses.replace(SIMPLE_CB, quorum=BreakerQuorum(min_instances=2, min_share=0.5))
    with_quorum = dataclasses.replace(SEED, circuit_breakers=MappingProxyType({"simpleCB": shared}))
    resolved = resolve_policies([with_quorum], NS, "checkout")

    [target] = resolved.targets
    assert target.circuit_breaker == shared
    assert resolved_from_proto(resolved_to_proto(resolved)).targets == resolved.targets
    plain = resolved_to_proto(resolve_policies([SEED], NS, "checkout"))
    assert resolved_to_proto(resolved).digest != plain.digest


def test_targets_are_sorted_explicit_before_defaults_within_a_kind() -> None:
    resolved = resolve_policies(MERGE_SPECS, NS, "app")

    keys = [
        (
            t.kind.value,
            t.is_default,
            t.name,
            t.direction.value if t.direction else "",
            t.component_type,
        )
        for t in resolved.targets
    ]
    assert keys == sorted(keys)
    assert isinstance(resolved, ResolvedPolicies)


# ---- documents Dapr accepts, from YAML to what the app enforces -------------------------------
# Each resolves as daprd's FromConfigurations + EndpointPolicy/ActorPreLockPolicy
# (dapr/dapr pkg/resiliency/resiliency.go) would.


def parsed(*texts: str) -> list[ResiliencySpec]:
    return [d.spec for text in texts for d in parse_documents(textwrap.dedent(text))]


def test_an_app_id_listed_twice_in_scopes_scopes_the_spec_to_it_once() -> None:
    [twice] = parsed("""\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: twice}
        scopes: [checkout, checkout]
        spec:
          policies: {timeouts: {fast: 1s}}
          targets: {apps: {order-processor: {timeout: fast}}}
        """)
    checkout = resolve_policies([twice], NS, "checkout").lookup(TargetKind.APP, "order-processor")
    assert names(checkout) == ("fast", None, None)
    assert resolve_policies([twice], NS, "other").targets == ()


def test_a_status_code_list_with_an_empty_entry_matches_the_codes_it_lists() -> None:
    [trailing] = parsed("""\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: codes}
        spec:
          policies:
            retries:
              r: {matching: {httpStatusCodes: "500,", gRPCStatusCodes: ",14"}}
          targets: {apps: {order-processor: {retry: r}}}
        """)
    target = resolve_policies([trailing], NS, "app").lookup(TargetKind.APP, "order-processor")
    assert target is not None and target.retry is not None
    assert str(target.retry.http_status_codes) == "500"
    assert str(target.retry.grpc_status_codes) == "14"


@pytest.mark.parametrize("builtin", sorted(BUILTIN_RETRIES))
def test_a_target_naming_an_undefined_builtin_gets_daprs_builtin(builtin: str) -> None:
    [named] = parsed(f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {{name: builtin}}
        spec:
          targets:
            apps: {{order-processor: {{retry: {builtin}}}}}
            actors: {{Cart: {{retry: {builtin}}}}}
        """)
    resolved = resolve_policies([named], NS, "app")
    for kind, target in ((TargetKind.APP, "order-processor"), (TargetKind.ACTOR, "Cart")):
        found = resolved.lookup(kind, target)
        assert found is not None and found.retry == BUILTIN_RETRIES[builtin]


def test_a_target_naming_a_builtin_another_document_overrides_gets_the_override() -> None:
    target, override = parsed(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: a-targets}
        spec: {targets: {apps: {order-processor: {retry: DaprBuiltInServiceRetries}}}}
        """,
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: b-override}
        spec: {policies: {retries: {DaprBuiltInServiceRetries: {duration: 2s, maxRetries: 1}}}}
        """,
    )
    found = resolve_policies([target, override], NS, "app").lookup(
        TargetKind.APP, "order-processor"
    )
    assert found is not None and found.retry is not None
    # Dapr raises an override's maxRetries to at least 3.
    assert (found.retry.duration, found.retry.max_retries) == (2.0, 3)


def test_a_cache_size_of_0_resolves_to_daprs_default_sizes() -> None:
    [zero] = parsed("""\
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: zero}
        spec:
          policies: {circuitBreakers: {cb: {}}}
          targets:
            apps: {order-processor: {circuitBreaker: cb, circuitBreakerCacheSize: 0}}
            actors:
              Cart: {circuitBreaker: cb, circuitBreakerScope: id, circuitBreakerCacheSize: 0}
        """)
    resolved = resolve_policies([zero], NS, "app")
    app = resolved.lookup(TargetKind.APP, "order-processor")
    actor = resolved.lookup(TargetKind.ACTOR, "Cart")
    # defaultEndpointCacheSize and defaultActorCacheSize
    assert app is not None and app.circuit_breaker_cache_size == 100
    assert actor is not None and actor.circuit_breaker_cache_size == 5000


CROSS_TARGETS = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: targets}
    scopes: [checkout]
    spec:
      targets:
        apps: {order-processor: {retry: retryForever, circuitBreaker: simpleCB}}
    """
CROSS_POLICIES = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: policies}
    spec:
      policies:
        retries: {retryForever: {duration: 5s, maxRetries: -1}}
        circuitBreakers: {simpleCB: {maxRequests: 1, timeout: 5s, trip: consecutiveFailures >= 5}}
    """


def test_a_target_uses_the_policies_another_document_defines() -> None:
    specs = parsed(CROSS_TARGETS, CROSS_POLICIES)
    found = resolve_policies(specs, NS, "checkout").lookup(TargetKind.APP, "order-processor")
    assert names(found) == (None, "retryForever", "simpleCB")
    # The breaker belongs to the spec of the target entry (its identity), as before.
    assert found is not None and found.spec_name == "targets"


def test_a_policy_from_a_document_outside_the_apps_scope_is_not_used() -> None:
    scoped_policies = CROSS_POLICIES.replace("    spec:", "    scopes: [someone-else]\n    spec:")
    specs = parsed(CROSS_TARGETS, scoped_policies)
    found = resolve_policies(specs, NS, "checkout").lookup(TargetKind.APP, "order-processor")
    # Dapr never loads the other document for checkout: the names find nothing.
    assert names(found) == (None, None, None)
