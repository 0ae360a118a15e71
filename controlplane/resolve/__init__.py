"""Policy resolution: which policies one (namespace, app-id) enforces.

``resolve_policies`` applies Dapr's rules (scopes, the ``Default…Policy``
lookup order, the ``DaprBuiltIn…`` retries and their overrides, the merge of
several specs) and returns the ``ResolvedPolicies`` an agent receives.
``check_documents`` checks what those rules make of documents applied
together: policy names defined in another document, or nowhere, and targets
or policies another spec takes over.
docs/resolution.md describes the rules and cites Dapr's code for each.
"""

from fusebox.controlplane.resolve._builtins import BUILTIN_RETRIES
from fusebox.controlplane.resolve._checks import check_documents
from fusebox.controlplane.resolve._defaults import COMPONENT_TYPES
from fusebox.controlplane.resolve._resolver import merge_key, resolve_policies

__all__ = ["BUILTIN_RETRIES", "COMPONENT_TYPES", "check_documents", "merge_key", "resolve_policies"]
