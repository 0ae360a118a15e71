"""Load generator for ``bench.ingest``: raw gRPC Connect streams sending outcome reports.

Each simulated agent opens its own ``AgentService.Connect`` stream (its own
channel, hence its own HTTP/2 connection), says hello as app ``checkout``,
waits for its policy snapshot, then sends ``OutcomeReport`` messages as fast as
flow control lets it for ``--seconds``. Report *k* of agent *j* carries one
breaker entry, method ``m{(j + k) mod B}`` of app ``upstream`` (so all ``B``
breakers stay busy whatever the number of agents) with the runs ``+9, -1`` (ten
outcomes; a failure never follows a failure, so nothing trips). ``sequence``
increases per stream. Messages are pre-serialized (the sequence is appended as
its varint field), so the generator spends its CPU on gRPC, not on protobuf.

Prints one JSON object: {"sent": n, "agents": A, "seconds": s}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import grpc

from fusebox.v1 import agent_pb2, policy_pb2

CONNECT = "/fusebox.v1.AgentService/Connect"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def report_bodies(spec: str, breakers: int) -> list[bytes]:
    """One serialized ``ConnectRequest{report}`` per breaker, without its sequence."""
    bodies = []
    for m in range(breakers):
        key = policy_pb2.BreakerKey(namespace="default", spec=spec,
                                    kind=policy_pb2.TARGET_KIND_APP, target="upstream",
                                    method=f"m{m}")
        report = agent_pb2.OutcomeReport(
            breakers=[agent_pb2.BreakerOutcomes(key=key, runs=[9, -1])]
        )
        bodies.append(report.SerializeToString())
    return bodies


def with_sequence(report_body: bytes, sequence: int) -> bytes:
    """``ConnectRequest{report: body + sequence}``: fields may come in any order on the wire."""
    report = report_body + b"\x10" + _varint(sequence)
    return b"\x1a" + _varint(len(report)) + report  # field 3 (report), length-delimited


async def one_agent(address: str, index: int, bodies: list[bytes], stop_at: float,
                    counts: list[int]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        connect = channel.stream_stream(CONNECT, request_serializer=None,
                                        response_deserializer=None)
        call = connect()
        hello = agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            namespace="default", app_id="checkout", instance_id=f"ingest-{os.getpid()}-{index}"))
        await call.write(hello.SerializeToString())
        snapshot = agent_pb2.ConnectResponse.FromString(await call.read())
        if snapshot.WhichOneof("message") != "snapshot":
            raise RuntimeError(f"expected a snapshot first, got {snapshot}")
        sequence = 0
        n = len(bodies)
        while time.monotonic() < stop_at:
            sequence += 1
            await call.write(with_sequence(bodies[(index + sequence) % n], sequence))
            counts[index] += 1
        await call.done_writing()
        call.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--spec", default="bench-ingest")
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--breakers", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    bodies = report_bodies(args.spec, args.breakers)
    counts = [0] * (args.first + args.agents)
    started = time.monotonic()
    stop_at = started + args.seconds
    await asyncio.gather(*(one_agent(args.server, args.first + i, bodies, stop_at, counts)
                           for i in range(args.agents)))
    print(json.dumps({"sent": sum(counts), "agents": args.agents,
                      "seconds": time.monotonic() - started}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
