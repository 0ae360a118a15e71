"""The Prometheus endpoint reflects breakers, outcomes and agents."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc

from fusebox.agent import AsyncAgent, BreakerOpenError
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import spec_pb2, spec_pb2_grpc

SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: metered
spec:
  policies:
    circuitBreakers:
      cb:
        trip: consecutiveFailures >= 2
  targets:
    apps:
      payments:
        circuitBreaker: cb
"""
DEADLINE = 10.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_show_breaker_state_outcomes_and_agents(tmp_path: Path) -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                          http_listen="127.0.0.1:0")
    async with FuseboxServer(config) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC))
        async with AsyncAgent(app_id="checkout", server=f"127.0.0.1:{server.port}",
                              cache_path=tmp_path / "cache.pb") as fb:
            async with asyncio.timeout(DEADLINE):
                while fb.policies is None or not fb.policies.targets:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

            async def fail() -> None:
                raise ConnectionError("payments is down")

            target = fb.app("payments", method="charge")
            async with asyncio.timeout(DEADLINE):
                while True:  # until the cluster's decision reaches this agent
                    try:
                        await target.call(fail)
                    except BreakerOpenError:
                        break
                    except ConnectionError:
                        await asyncio.sleep(0.01)
            text = await asyncio.to_thread(scrape, server.http_port)
    assert "fusebox_connected_agents 1.0" in text
    assert ('fusebox_fleet_cb_state{kind="app",method="charge",name="payments:charge",'
            'namespace="default",spec="metered",status="open",target="payments"} 1.0') in text
    assert 'fusebox_breaker_transitions_total{cause="trip",from_state="closed",to_state="open"}' \
        in text
    outcomes = [line for line in text.splitlines()
                if line.startswith("fusebox_outcomes_ingested_total ")]
    assert outcomes and float(outcomes[0].split()[1]) >= 2
