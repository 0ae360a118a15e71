"""Spec texts shared by the spec tests."""

from tests.support.specs import SEED_SPEC

# The resiliency.yaml of Dapr's service-to-service quickstart (the seed scenario), verbatim.
SEED = SEED_SPEC

# The smallest valid document header; tests append to it.
HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: s\n"
