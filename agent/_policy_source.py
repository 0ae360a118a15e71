"""Where the policies an agent enforces came from: one vocabulary for the API, logs and docs."""

from __future__ import annotations

import enum


class PolicySource(enum.StrEnum):
    """``Agent.policy_source``: a ``str``, so ``fb.policy_source == "server"`` holds.

    * ``server``: a snapshot from the control plane was applied.
    * ``cache``: the control plane did not answer within ``initial_fetch_timeout``;
      the disk cache written for the same server, namespace and app-id is enforced.
    * ``static``: policies given to the agent (``policies=`` or ``set_policies``).
    * ``none``: no policies; calls pass through unguarded.
    """

    SERVER = "server"
    CACHE = "cache"
    STATIC = "static"
    NONE = "none"
