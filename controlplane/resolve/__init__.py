"""Policy resolution: which policies one (namespace, app-id) enforces.

``resolve_policies`` applies Dapr's rules (scopes, the ``Default…Policy``
lookup order, the ``DaprBuiltIn…`` retries and their overrides, the merge of
several specs) and returns the ``ResolvedPolicies`` an agent receives.
docs/resolution.md describes the rules and cites Dapr's code for each.
"""

from fusebox.controlplane.resolve._builtins import BUILTIN_RETRIES
from fusebox.controlplane.resolve._defaults import COMPONENT_TYPES
from fusebox.controlplane.resolve._resolver import resolve_policies

__all__ = ["BUILTIN_RETRIES", "COMPONENT_TYPES", "resolve_policies"]
