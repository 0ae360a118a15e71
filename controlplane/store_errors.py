"""Errors every store raises: the spec stores, the breaker stores, the audit stores.

The server maps ``StoreUnavailable`` onto ``UNAVAILABLE`` (and its health onto
``NOT_SERVING``) whichever store it came from.
"""

from __future__ import annotations

__all__ = ["StoreError", "StoreUnavailable"]


class StoreError(Exception):
    """Base of store errors."""


class StoreUnavailable(StoreError):
    """The backing store cannot be reached (maps to UNAVAILABLE / NOT_SERVING)."""
