"""The benchmarks' own machinery, at toy size: they must keep running, not only compile."""

from __future__ import annotations

from bench import grpc_fanout


def test_the_grpc_fanout_baseline_delivers_every_round_to_every_stream() -> None:
    result = grpc_fanout.run(streams=12, servers=2, clients=2, rounds=3)
    assert len(result["per_round_all_streams_ms"]) == 3
    # A round is reported once every stream of every client got its message.
    assert result["each_stream_ms"]["min"] <= result["all_streams_ms"]["max"]
    assert result["server_cpu_us_per_msg"] > 0 and result["client_cpu_us_per_msg"] > 0
    assert grpc_fanout.shares(12, 2) == [(0, 6), (6, 6)]
