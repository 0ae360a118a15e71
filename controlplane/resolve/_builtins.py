"""Dapr's built-in retry policies and the rule for overriding them.

Dapr registers five ``DaprBuiltIn…`` retry policies before it reads any spec
(``addBuiltInPolicies`` in dapr/dapr ``pkg/resiliency/resiliency.go``); a spec
that defines a retry policy with one of these names replaces it, except that a
replacement may not retry less than 3 times and ``DaprBuiltInActorNotFoundRetries``
cannot be replaced at all. See docs/resolution.md for where Fusebox differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from fusebox.agent.policy import BackoffKind, RetryPolicy

SERVICE_RETRIES = "DaprBuiltInServiceRetries"
ACTOR_RETRIES = "DaprBuiltInActorRetries"
ACTOR_REMINDER_RETRIES = "DaprBuiltInActorReminderRetries"
ACTOR_NOT_FOUND_RETRIES = "DaprBuiltInActorNotFoundRetries"
INITIALIZATION_RETRIES = "DaprBuiltInInitializationRetries"

# Dapr refuses to let an override weaken a built-in retry below this count.
MIN_OVERRIDE_RETRIES = 3
# Dapr ignores (with a warning) a spec that tries to replace these.
PROTECTED_BUILTINS = frozenset({ACTOR_NOT_FOUND_RETRIES})

# Only the fields Dapr sets are given; the others keep RetryPolicy's defaults,
# which the backoff kind in question does not read.
BUILTIN_RETRIES: Mapping[str, RetryPolicy] = MappingProxyType(
    {
        ACTOR_NOT_FOUND_RETRIES: RetryPolicy(
            name=ACTOR_NOT_FOUND_RETRIES,
            backoff=BackoffKind.CONSTANT,
            duration=1.0,
            max_retries=5,
        ),
        ACTOR_REMINDER_RETRIES: RetryPolicy(
            name=ACTOR_REMINDER_RETRIES,
            backoff=BackoffKind.EXPONENTIAL,
            initial_interval=0.5,
            randomization_factor=0.5,
            multiplier=1.5,
            max_interval=60.0,
            max_elapsed_time=15 * 60.0,
            # Dapr's Go literal leaves MaxRetries at its zero value; Dapr documents
            # "for a duration of 15 mins", which is what maxElapsedTime bounds.
            max_retries=-1,
        ),
        ACTOR_RETRIES: RetryPolicy(
            name=ACTOR_RETRIES,
            backoff=BackoffKind.CONSTANT,
            duration=1.0,
            max_retries=3,
        ),
        INITIALIZATION_RETRIES: RetryPolicy(
            name=INITIALIZATION_RETRIES,
            backoff=BackoffKind.EXPONENTIAL,
            duration=2.0,
            initial_interval=0.5,
            randomization_factor=0.5,
            multiplier=1.5,
            max_interval=1.0,
            max_elapsed_time=10.0,
            max_retries=3,
        ),
        SERVICE_RETRIES: RetryPolicy(
            name=SERVICE_RETRIES,
            backoff=BackoffKind.CONSTANT,
            duration=1.0,
            max_retries=3,
        ),
    }
)
"""Dapr's built-in retry policies with their built-in values, by name."""


def override_builtin(name: str, policy: RetryPolicy) -> RetryPolicy | None:
    """What a spec's retry policy called ``name`` becomes, or None to keep the built-in.

    Only meaningful for names in ``BUILTIN_RETRIES``. A protected built-in is
    never replaced. A replacement that retries fewer than 3 times is raised to 3
    (Dapr does the same); -1 (unlimited) is kept, as it already retries more.
    """
    if name in PROTECTED_BUILTINS:
        return None
    if 0 <= policy.max_retries < MIN_OVERRIDE_RETRIES:
        policy = dataclasses.replace(policy, max_retries=MIN_OVERRIDE_RETRIES)
    return dataclasses.replace(policy, name=name)
