"""Spec texts shared by the tests."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
# The resiliency.yaml of Dapr's service-to-service quickstart (seed 000), verbatim.
SEED_SPEC_PATH = REPOSITORY / "examples" / "resiliency.yaml"
SEED_SPEC = SEED_SPEC_PATH.read_text()


def retry_spec(max_retries: int) -> str:
    """Checkout's calls to order-processor retried ``max_retries`` times, 1 ms apart:
    a test sees which policies are in force in the number of attempts of one call."""
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: resiliency
spec:
  policies:
    retries:
      quick:
        policy: constant
        duration: 1ms
        maxRetries: {max_retries}
  targets:
    apps:
      order-processor:
        retry: quick
"""
