"""Times on the wire: unix seconds (what the stores keep) to protobuf Timestamps."""

from __future__ import annotations

from google.protobuf import timestamp_pb2


def timestamp(unix_seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(unix_seconds * 1e9))
    return ts
