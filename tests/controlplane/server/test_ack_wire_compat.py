"""Acks and rejection counts on the wire: old and new agents and servers still talk.

"Old" is agent.proto as it was before (no ``breaker_acks``, no
``BreakerOutcomes.rejected``, no ``BreakerInterest.acks_updates``), rebuilt
from the current descriptor with those removed; what an old peer parses is
what proto3 gives it for fields it does not know: nothing. The last test
sends a server a message no version defines yet, over a real stream.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.eventually import eventually_async
from tests.support.specs import SEED_SPEC

HELD = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                             kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                             method="orders")
NEW_FIELDS = {"ConnectRequest": "breaker_acks", "BreakerOutcomes": "rejected",
              "BreakerInterest": "acks_updates"}
NEW_MESSAGES = {"BreakerAck", "BreakerAcks"}


def _old_agent_proto(proto: descriptor_pb2.FileDescriptorProto) -> None:
    kept = [m for m in proto.message_type if m.name not in NEW_MESSAGES]
    del proto.message_type[:]
    proto.message_type.extend(kept)
    for message in proto.message_type:
        removed = NEW_FIELDS.get(message.name)
        fields = [f for f in message.field if f.name != removed]
        del message.field[:]
        message.field.extend(fields)


@functools.cache
def _old_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if file.name == agent_pb2.DESCRIPTOR.name:
            _old_agent_proto(proto)
        pool.Add(proto)
        added.add(file.name)

    add(agent_pb2.DESCRIPTOR)
    return pool


def old_message(name: str) -> Any:
    """The class an agent or server from before acks has for ``fusebox.v1.<name>``."""
    return message_factory.GetMessageClass(
        _old_pool().FindMessageTypeByName(f"fusebox.v1.{name}"))


def test_an_old_server_sees_no_message_in_an_ack_and_plain_outcomes_and_interest() -> None:
    old = old_message("ConnectRequest")
    acks = agent_pb2.ConnectRequest(breaker_acks=agent_pb2.BreakerAcks(acks=[
        agent_pb2.BreakerAck(key=HELD, generation=7)]))
    assert old.FromString(acks.SerializeToString()).WhichOneof("message") is None

    report = agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(sequence=3, breakers=[
        agent_pb2.BreakerOutcomes(key=HELD, runs=[4, -1], generation=2, rejected=9)]))
    seen = old.FromString(report.SerializeToString())
    assert seen.WhichOneof("message") == "report"
    (entry,) = seen.report.breakers
    assert list(entry.runs) == [4, -1] and entry.generation == 2
    assert entry.key.SerializeToString() == HELD.SerializeToString()

    interest = agent_pb2.ConnectRequest(interest=agent_pb2.BreakerInterest(
        add=[HELD], acks_updates=True))
    (added,) = old.FromString(interest.SerializeToString()).interest.add
    assert added.SerializeToString() == HELD.SerializeToString()


def test_a_new_server_reads_an_old_agent_as_one_that_neither_acks_nor_counts_rejections(
) -> None:
    old = old_message("ConnectRequest")
    old_key = old_message("BreakerKey").FromString(HELD.SerializeToString())
    interest = old(interest=old_message("BreakerInterest")(add=[old_key]))
    assert not agent_pb2.ConnectRequest.FromString(
        interest.SerializeToString()).interest.acks_updates
    report = old(report=old_message("OutcomeReport")(breakers=[
        old_message("BreakerOutcomes")(key=old_key, runs=[-2])]))
    (entry,) = agent_pb2.ConnectRequest.FromString(report.SerializeToString()).report.breakers
    assert list(entry.runs) == [-2] and entry.rejected == 0


async def test_a_server_ignores_a_message_it_does_not_know_and_keeps_the_stream() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as server, grpc.aio.insecure_channel(
            f"127.0.0.1:{server.port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        connect = channel.stream_stream(
            "/fusebox.v1.AgentService/Connect",
            request_serializer=lambda raw: raw,
            response_deserializer=agent_pb2.ConnectResponse.FromString,
        )
        call = connect()
        await call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id="checkout", instance_id="checkout-future")).SerializeToString())
        assert (await asyncio.wait_for(call.read(), 10)).WhichOneof("message") == "snapshot"
        # Field 15 of ConnectRequest (length-delimited, 2 bytes): a future agent's message.
        await call.write(bytes([15 << 3 | 2, 2, 0x08, 0x01]))
        await call.write(agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
            sequence=1, breakers=[agent_pb2.BreakerOutcomes(key=HELD, runs=[3])],
        )).SerializeToString())
        await eventually_async(
            lambda: (server.metrics.registry.get_sample_value(
                "fusebox_outcomes_ingested_total") or 0) == 3,
            what="the report after the unknown message ingested")
        call.cancel()
