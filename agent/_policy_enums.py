"""The policy model's enums; import them from ``fusebox.agent.policy``.

They are defined apart from it so that ``fusebox.agent.wire_enums`` (the
tables mapping them onto the wire) can import them, and
``fusebox.agent.policy`` those tables, without an import cycle.
"""

from __future__ import annotations

import enum


class TargetKind(enum.Enum):
    APP = "app"
    ACTOR = "actor"
    COMPONENT = "component"


class Direction(enum.Enum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class BackoffKind(enum.Enum):
    CONSTANT = "constant"
    EXPONENTIAL = "exponential"


class BreakerScope(enum.Enum):
    ID = "id"
    TYPE = "type"
    BOTH = "both"


class RateLimitScope(enum.Enum):
    """Who shares a rate limit: the calling app's instances, or every caller's."""

    APP = "app"
    FLEET = "fleet"


class WhenExceeded(enum.Enum):
    """What a call over its rate limit gets: refused at once, or a bounded wait."""

    REJECT = "reject"
    WAIT = "wait"


class BudgetKind(enum.Enum):
    """The two kinds of fleet budget (part of a ``BudgetKey``)."""

    RATE_LIMIT = "rate-limit"
    RETRY_BUDGET = "retry-budget"
