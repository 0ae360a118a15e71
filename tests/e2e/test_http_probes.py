"""A real `fusebox serve` on Redis: /readyz follows Redis, /healthz stays up.

The server process serves its HTTP port (`--metrics-listen`, the old name of
`--http-listen`, still accepted); a real
redis-server is stopped and started again on the same port. While Redis is
down the replica is alive (200 on /healthz) but not ready (503 on /readyz,
saying which store is unreachable); once Redis answers it is ready again.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.chaos.support import metrics_args
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

DEADLINE = 20.0


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_readyz_flips_with_redis_and_healthz_stays_alive(
    tmp_path: Path, fresh_redis: RedisServer,
) -> None:
    args, port = metrics_args()
    server = ServerProcess(tmp_path, store_url=fresh_redis.url,
                           extra_args=args)
    server.start()
    try:
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz") == (200, "ready\n")
        status, text = get(port, "/metrics")
        assert status == 200 and "fusebox_connected_agents" in text
        assert get(port, "/")[0] == 404

        fresh_redis.stop()
        seen: list[tuple[int, str]] = []
        eventually(lambda: seen.append(get(port, "/readyz")) or seen[-1][0] == 503,
                   deadline=DEADLINE, what="/readyz 503 while Redis is down",
                   details=lambda: str(seen[-3:]))
        assert "store unavailable" in seen[-1][1], seen[-1]
        assert get(port, "/healthz") == (200, "ok\n")

        fresh_redis.start()
        eventually(lambda: get(port, "/readyz") == (200, "ready\n"), deadline=DEADLINE,
                   what="/readyz 200 once Redis answers again")
        assert get(port, "/healthz") == (200, "ok\n")
    finally:
        server.stop()
