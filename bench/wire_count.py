"""Counting what an agent sends to the control plane, without touching either.

``CountingProxy`` is a loopback TCP relay placed between the agent and the
server. It parses the HTTP/2 frames that cross it (cleartext gRPC, so no TLS
to see through) and counts, per direction, the bytes, the frames by type and
the complete gRPC messages (the 5-byte length-prefixed records inside DATA
frames), which an optional ``Describe`` function names (e.g. decoded as the
Connect stream's messages). Neither the agent nor the server is patched: what
the proxy counts is what went over the wire.

``ThreadIO`` reads the Linux per-thread I/O accounting
(``/proc/thread-self/io``): read and write system calls made by the calling
thread. A guarded call that did network I/O would show up there even if it
bypassed the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Names what one gRPC message (its serialized bytes) is: {"report": 1, "outcomes": 812}.
Describe = Callable[[bytes], Mapping[str, int]]

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
GRPC_PREFIX = 5
FRAME_TYPES = {
    0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
    6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION",
}
_PADDED = 0x8


@dataclass(frozen=True, slots=True)
class WireCount:
    """What crossed the wire in one direction."""

    bytes: int = 0
    grpc_messages: int = 0
    frames: dict[str, int] = field(default_factory=dict)  # HTTP/2 frames by type
    contents: dict[str, int] = field(default_factory=dict)  # what the messages were

    def __sub__(self, earlier: WireCount) -> WireCount:
        return WireCount(self.bytes - earlier.bytes, self.grpc_messages - earlier.grpc_messages,
                         _minus(self.frames, earlier.frames),
                         _minus(self.contents, earlier.contents))

    def as_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "grpc_messages": self.grpc_messages,
                "frames": dict(sorted(self.frames.items())),
                "contents": dict(sorted(self.contents.items()))}


def _minus(later: Mapping[str, int], earlier: Mapping[str, int]) -> dict[str, int]:
    diff = {k: v - earlier.get(k, 0) for k, v in later.items()}
    return {k: v for k, v in diff.items() if v}


class Http2Tap:
    """Incremental HTTP/2 frame parser for one direction of one connection."""

    def __init__(self, *, client_side: bool, describe: Describe | None = None) -> None:
        self._describe = describe
        self._buffer = bytearray()
        self._preface_left = len(CLIENT_PREFACE) if client_side else 0
        self._streams: dict[int, bytearray] = {}  # gRPC bytes not yet forming a whole message
        self.bytes = 0
        self.grpc_messages = 0
        self.frames: Counter[str] = Counter()
        self.contents: Counter[str] = Counter()

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self._buffer += data
        if self._preface_left:
            skipped = min(self._preface_left, len(self._buffer))
            del self._buffer[:skipped]
            self._preface_left -= skipped
        while len(self._buffer) >= FRAME_HEADER:
            length = int.from_bytes(self._buffer[0:3], "big")
            if len(self._buffer) < FRAME_HEADER + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            stream = int.from_bytes(self._buffer[5:9], "big") & 0x7FFF_FFFF
            payload = bytes(self._buffer[FRAME_HEADER:FRAME_HEADER + length])
            del self._buffer[:FRAME_HEADER + length]
            self.frames[FRAME_TYPES.get(kind, f"type{kind}")] += 1
            if kind == 0:
                self._data(stream, flags, payload)

    def _data(self, stream: int, flags: int, payload: bytes) -> None:
        if flags & _PADDED and payload:
            payload = payload[1:len(payload) - payload[0]]
        pending = self._streams.setdefault(stream, bytearray())
        pending += payload
        while len(pending) >= GRPC_PREFIX:
            size = int.from_bytes(pending[1:5], "big")
            if len(pending) < GRPC_PREFIX + size:
                break
            compressed, message = pending[0], bytes(pending[GRPC_PREFIX:GRPC_PREFIX + size])
            del pending[:GRPC_PREFIX + size]
            self.grpc_messages += 1
            if compressed:
                self.contents["compressed"] += 1
            elif self._describe is not None:
                self.contents.update(self._describe(message))


class CountingProxy:
    """A loopback relay to ``upstream_port`` that counts the HTTP/2 traffic it carries.

    Runs on the event loop that calls ``start``; ``totals`` must run there too
    (use ``asyncio.run_coroutine_threadsafe`` from another thread).
    """

    def __init__(self, upstream_port: int, *, describe_sent: Describe | None = None,
                 describe_received: Describe | None = None) -> None:
        self.upstream_port = upstream_port
        self._describe_sent, self._describe_received = describe_sent, describe_received
        self.port = 0
        self.connections = 0
        self._taps: list[tuple[Http2Tap, Http2Tap]] = []  # (client->server, server->client)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        self.connections += 1
        up = Http2Tap(client_side=True, describe=self._describe_sent)
        down = Http2Tap(client_side=False, describe=self._describe_received)
        self._taps.append((up, down))
        pumps = [
            asyncio.create_task(_pump(client_reader, upstream_writer, up)),
            asyncio.create_task(_pump(upstream_reader, client_writer, down)),
        ]
        self._pumps.update(pumps)
        # One side closing ends the relay: close both, like a real hop would.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for writer in (client_writer, upstream_writer):
            writer.close()
        self._pumps.difference_update(pumps)

    async def totals(self) -> tuple[WireCount, WireCount]:
        """(agent → server, server → agent) over every connection so far."""
        return _sum(t[0] for t in self._taps), _sum(t[1] for t in self._taps)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._pumps):
                task.cancel()
            await asyncio.gather(*self._pumps, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                tap: Http2Tap) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            tap.feed(data)
            writer.write(data)
            await writer.drain()


def _sum(taps: Iterable[Http2Tap]) -> WireCount:
    total_bytes = messages = 0
    frames: Counter[str] = Counter()
    contents: Counter[str] = Counter()
    for tap in taps:
        total_bytes += tap.bytes
        messages += tap.grpc_messages
        frames.update(tap.frames)
        contents.update(tap.contents)
    return WireCount(total_bytes, messages, dict(frames), dict(contents))


@dataclass(frozen=True, slots=True)
class SyscallCount:
    reads: int
    writes: int

    def __sub__(self, earlier: SyscallCount) -> SyscallCount:
        return SyscallCount(self.reads - earlier.reads, self.writes - earlier.writes)


class ThreadIO:
    """Read/write syscall counts of the calling thread, net of the cost of reading them."""

    PATH = "/proc/thread-self/io"

    def __init__(self) -> None:
        self.available = os.path.exists(self.PATH)
        self._own_cost = SyscallCount(0, 0)
        if self.available:
            first = self._read()
            self._own_cost = self._read() - first  # what one reading itself adds

    def _read(self) -> SyscallCount:
        fd = os.open(self.PATH, os.O_RDONLY)
        try:
            text = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
        fields = dict(line.split(": ") for line in text.splitlines())
        return SyscallCount(int(fields["syscr"]), int(fields["syscw"]))

    def snapshot(self) -> SyscallCount | None:
        return self._read() if self.available else None

    def since(self, earlier: SyscallCount | None) -> SyscallCount | None:
        """Syscalls this thread made since ``earlier`` (its own readings excluded)."""
        if earlier is None:
            return None
        return self._read() - earlier - self._own_cost
