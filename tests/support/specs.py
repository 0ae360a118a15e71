"""Spec texts shared by the tests."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
# The resiliency.yaml of Dapr's service-to-service quickstart (seed 000), verbatim.
SEED_SPEC_PATH = REPOSITORY / "examples" / "resiliency.yaml"
SEED_SPEC = SEED_SPEC_PATH.read_text()
