"""fusebox.controlplane.redis_client: which topology a store URL names, and what it refuses."""

from __future__ import annotations

import pytest

from fusebox.controlplane.redis_client import Topology, parse_redis_url
from fusebox.controlplane.server.config import ServerConfig
from fusebox.controlplane.spec_store import open_store
from fusebox.controlplane.spec_store.redis import RedisSpecStore


def test_cluster_url_lists_its_startup_nodes() -> None:
    location = parse_redis_url("redis+cluster://u:secret@10.0.0.1:7000,10.0.0.2:7001")
    assert location.topology is Topology.CLUSTER
    assert location.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (location.username, location.password, location.wait_replicas) == ("u", "secret", 0)
    assert "secret" not in location.display and "secret" not in repr(location)


def test_sentinel_url_names_the_master_and_waits_for_one_replica_by_default() -> None:
    location = parse_redis_url("redis+sentinel://10.0.0.1,10.0.0.2:26380/mymaster/2")
    assert location.topology is Topology.SENTINEL
    assert location.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (location.master_name, location.db, location.wait_replicas) == ("mymaster", 2, 1)
    assert parse_redis_url("redis+sentinel://h:1/m?wait_replicas=0").wait_replicas == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h:26379", "needs the master name"),
        ("redis+cluster://h:7000/3", "database 0 only"),
        ("redis+cluster://h:7000?wait_replicas=1", "not available on a Redis Cluster"),
        ("redis+sentinel://h:1/m?colour=blue", "unknown option"),
        ("redis+cluster://:pw@h:notaport", "is not HOST:PORT"),
        ("redis://a:1,b:2/0", "several hosts need"),
    ],
)
def test_malformed_urls_say_what_is_wrong_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        open_store(url.replace("://", "://:pw@", 1) if "@" not in url else url)
    assert "pw" not in str(raised.value).replace("wait_replicas", "")


@pytest.mark.parametrize("url", ["redis+cluster://h:7000", "redis+sentinel://h:26379/m"])
def test_new_topologies_open_the_redis_stores_and_breakers_follow_them(url: str) -> None:
    assert isinstance(open_store(url), RedisSpecStore)
    assert ServerConfig(store_url=url).effective_breaker_store_url() == url
