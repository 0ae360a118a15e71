"""``open_breaker_store``: which store a URL names."""

from __future__ import annotations

import pytest

from fusebox.controlplane.breakers import open_breaker_store
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.redis import RedisBreakerStore


@pytest.mark.parametrize("url", [None, "", "memory://", "sqlite:///var/lib/fusebox/db"])
def test_embedded_urls_open_the_in_memory_store(url: str | None) -> None:
    assert isinstance(open_breaker_store(url), EmbeddedBreakerStore)


def test_redis_urls_open_the_redis_store_and_others_are_refused() -> None:
    assert isinstance(open_breaker_store("redis://127.0.0.1:6379/0"), RedisBreakerStore)
    with pytest.raises(ValueError, match="accepted"):
        open_breaker_store("postgres://x")
