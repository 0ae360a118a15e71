"""The transport's floor: raw grpc.aio pushing one small message to a thousand streams.

``bench.many_agents`` measures how long a breaker trip takes to reach 1,000 agents.
Part of that is Fusebox (the trip, the store, the fan-out, the agent's handling);
part is only gRPC moving one message to 1,000 server-streaming connections between
processes on this machine. This benchmark measures that second part alone, with no
Fusebox code in the path and the same topology, so the scale benchmark can print it
next to its own figures (``run()`` returns them).

Topology (all on 127.0.0.1, every process stopped at the end, bounded by
``--max-seconds``): ``--servers`` grpc.aio server processes, each serving one
bidirectional-streaming method with bytes in and out (identity serializers, no
protobuf); ``--clients`` processes holding ``--streams`` streams together, stream
*i* on server *i mod servers*, each stream on its own ``insecure_channel`` object as
each agent has (grpc shares one TCP connection per target within a process anyway).
A stream writes a hello, then only reads; the server gives each stream a queue and
yields whatever is put in it.

Rounds (``--rounds`` plus one warm-up round, not counted): the orchestrator picks a
fire time T 0.2 s ahead and tells every server; at T each server puts one 60-byte
message into every one of its stream queues. Each client process reports the receive
time (``time.time()``: one clock, one machine) of each of its streams once all of
them got the round's message. Figures per round: all streams (the last stream's
receive - T) and the median stream. T is the *intended* fire time, so a server's
timer waking late counts in the figures; that lateness is reported on its own.

CPU per message: each process's user + system CPU (``getrusage``, all its threads)
from just before the first counted round to just after the last, divided by the
messages it sent (servers) or received (clients). That window also holds the idle
gaps (0.2 s lead + 0.3 s between rounds); an idle grpc.aio process uses next to no
CPU, and the gaps are kept that short so that they barely count.

    python -m bench.grpc_fanout [--streams 1000] [--servers 3] [--clients 4] [--rounds 20]

The children are this module again (``--child server|client``), driven like
``bench._cluster_worker``: JSON-line commands on stdin, events on stdout (closing
stdin stops a child):

    server: -> {"event": "ready", "port": P} once serving
        {"cmd": "fire", "round": r, "at": T}   at T, the round's message to every stream
    client:
        {"cmd": "connect", "first": i, "count": n, "servers": ["127.0.0.1:P", ...]}
            -> {"event": "connected"} once every stream is registered on its server;
        then, per round: {"event": "round", "round": r, "t": [receive time per stream]}
    both:
        {"cmd": "cpu_begin"} -> {"event": "cpu_begun"}
        {"cmd": "cpu_end"}   -> {"event": "cpu", "seconds": s, "messages": n,
                                 "late_ms": [...]}  (servers: timer lateness per round)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from bench.cluster_support import (
    Cleanup,
    WorkerProcess,
    dump_json,
    machine_line,
    percentile,
    spawn,
    time_bound,
)

SERVICE = "fanout.Fanout"
METHOD = "Connect"
MESSAGE_BYTES = 60
HELLO = b"hello"
WELCOME = b"welcome"  # a server's first message on a stream: "you are registered"
LEAD_S = 0.2  # the fire time is this far ahead: every server has the command before T
IDLE_S = 0.3  # between rounds; short, so idle CPU barely counts in the CPU window
START_DEADLINE = 60.0
CONNECT_DEADLINE = 120.0
ROUND_DEADLINE = 30.0

Command = dict[str, Any]
Handler = Callable[[Command], Awaitable[Command | None]]


# --- the children -------------------------------------------------------------------------


def round_message(number: int) -> bytes:
    """60 bytes naming the round, so a client files each receive time under it."""
    return f"round {number} ".encode().ljust(MESSAGE_BYTES, b".")


def message_round(message: bytes) -> int:
    return int(message.split(b" ", 2)[1])


def _identity(message: bytes) -> bytes:
    return message


def _emit(**event: Any) -> None:
    """One event line on stdout (the orchestrator's reader thread parses it)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuPerMessage:
    """This process's CPU seconds and messages handled between ``begin`` and ``end``."""

    def __init__(self, messages: Callable[[], int]) -> None:
        self._messages = messages
        self._start = (0.0, 0)

    def begin(self) -> None:
        self._start = (_cpu_seconds(), self._messages())

    def end(self) -> Command:
        return {"seconds": _cpu_seconds() - self._start[0],
                "messages": self._messages() - self._start[1]}


async def _drain(requests: AsyncIterator[bytes]) -> None:
    async for _ in requests:
        pass


class FanoutServer:
    """One grpc.aio server: a queue per accepted stream; ``fire`` fills every queue."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.sent = 0
        self.late_ms: list[float] = []
        self.cpu = CpuPerMessage(lambda: self.sent)
        self._server: Any = None

    async def start(self) -> int:
        """Serves on 127.0.0.1; returns the port (the kernel's pick: free, and no race)."""
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            METHOD: grpc.stream_stream_rpc_method_handler(
                self._connect, request_deserializer=_identity, response_serializer=_identity),
        })
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        port = int(self._server.add_insecure_port("127.0.0.1:0"))
        await self._server.start()
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    async def _connect(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        if await anext(requests, None) is None:
            return  # the client left before its hello
        stream: asyncio.Queue[bytes] = asyncio.Queue()
        # Keep reading the client's side so the stream stays healthy (flow control,
        # half-close), as a real control plane reads reports on the same stream.
        drain = asyncio.create_task(_drain(requests))
        self.queues.add(stream)
        stream.put_nowait(WELCOME)
        try:
            while True:
                yield await stream.get()
                self.sent += 1  # the generator resumes once grpc has taken the message
        finally:
            self.queues.discard(stream)
            drain.cancel()

    async def fire(self, number: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        self.late_ms.append((time.time() - at) * 1000)
        message = round_message(number)
        for stream in self.queues:
            stream.put_nowait(message)

    def handlers(self) -> dict[str, Handler]:
        async def fire(command: Command) -> None:
            await self.fire(int(command["round"]), float(command["at"]))

        async def cpu_begin(command: Command) -> Command:
            self.late_ms.clear()  # only the counted rounds' lateness
            self.cpu.begin()
            return {"event": "cpu_begun"}

        async def cpu_end(command: Command) -> Command:
            return {"event": "cpu", **self.cpu.end(), "late_ms": self.late_ms}

        return {"fire": fire, "cpu_begin": cpu_begin, "cpu_end": cpu_end}


class FanoutClient:
    """The streams of one client process; reports a round once all of them received it."""

    def __init__(self) -> None:
        self.count = 0
        self.received = 0
        self.cpu = CpuPerMessage(lambda: self.received)
        self._welcomed = 0
        self._connected = asyncio.Event()
        self._stamps: defaultdict[int, list[float]] = defaultdict(list)
        self._channels: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, first: int, count: int, servers: Sequence[str]) -> None:
        self.count = count
        for i in range(first, first + count):
            task = asyncio.create_task(self._stream(servers[i % len(servers)]))
            task.add_done_callback(self._stream_ended)
            self._tasks.add(task)
        await asyncio.wait_for(self._connected.wait(), CONNECT_DEADLINE)

    async def _stream(self, address: str) -> None:
        channel = grpc.aio.insecure_channel(address)  # one per stream, as one per agent
        self._channels.append(channel)
        call = channel.stream_stream(f"/{SERVICE}/{METHOD}", request_serializer=_identity,
                                     response_deserializer=_identity)()
        await call.write(HELLO)
        welcome = await call.read()
        if welcome != WELCOME:
            raise RuntimeError(f"{address}: expected the welcome, got {welcome!r}")
        self._welcomed += 1
        if self._welcomed == self.count:
            self._connected.set()
        while True:
            message = await call.read()
            received = time.time()  # first thing: the figure is when the message is in hand
            if message is grpc.aio.EOF:
                raise RuntimeError(f"{address}: the server ended the stream")
            self._file(message_round(message), received)

    def _file(self, number: int, received: float) -> None:
        self.received += 1
        stamps = self._stamps[number]
        stamps.append(received)
        if len(stamps) == self.count:
            del self._stamps[number]
            _emit(event="round", round=number, t=stamps)

    def _stream_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _emit(event="error", error=f"stream: {task.exception()!r}")

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._channels), return_exceptions=True)

    def handlers(self) -> dict[str, Handler]:
        async def connect(command: Command) -> Command:
            await self.connect(int(command["first"]), int(command["count"]),
                               list(command["servers"]))
            return {"event": "connected"}

        async def cpu_begin(command: Command) -> Command:
            self.cpu.begin()
            return {"event": "cpu_begun"}

        async def cpu_end(command: Command) -> Command:
            return {"event": "cpu", **self.cpu.end()}

        return {"connect": connect, "cpu_begin": cpu_begin, "cpu_end": cpu_end}


async def _commands() -> AsyncIterator[Command]:
    """JSON commands from stdin until EOF; read in a thread: the loop never blocks on it."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin.buffer:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, b"")

    # A daemon thread, not the default executor: a child never waits for it on exit.
    threading.Thread(target=pump, daemon=True).start()
    while line := await lines.get():
        yield json.loads(line)


async def _obey(handlers: dict[str, Handler]) -> None:
    """Runs each command in turn; a failure becomes an error event, not a silent exit."""
    async for command in _commands():
        try:
            reply = await handlers[command["cmd"]](command)
            if reply is not None:
                _emit(**reply)
        except Exception as e:
            _emit(event="error", error=f"{e!r}\n{traceback.format_exc()}")


async def child_main(role: str) -> None:
    # Ctrl-C reaches the whole process group: the orchestrator stops its children itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if role == "server":
        server = FanoutServer()
        _emit(event="ready", port=await server.start())
        try:
            await _obey(server.handlers())
        finally:
            await server.stop()
    else:
        client = FanoutClient()
        try:
            await _obey(client.handlers())
        finally:
            await client.close()


# --- the orchestrator ---------------------------------------------------------------------


class Child(WorkerProcess):
    """``python -m bench.grpc_fanout --child ROLE``; the JSON-lines protocol of WorkerProcess."""

    def __init__(self, cleanup: Cleanup, role: str, name: str) -> None:
        self.name = name
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log = cleanup.workdir / f"{name}.log"
        self._stderr = self.log.open("wb")
        self.process = spawn([sys.executable, "-m", "bench.grpc_fanout", "--child", role],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        cleanup.push(self.stop)
        threading.Thread(target=self._read, daemon=True).start()


def shares(streams: int, clients: int) -> list[tuple[int, int]]:
    """(first stream, count) per client process: contiguous, sizes differing by one at most."""
    base, extra = divmod(streams, clients)
    result, first = [], 0
    for n in range(clients):
        count = base + (1 if n < extra else 0)
        result.append((first, count))
        first += count
    return result


def connect(servers: list[Child], clients: list[Child], streams: int) -> float:
    """Seconds from the connect commands until every stream is registered on its server."""
    deadline = time.monotonic() + START_DEADLINE
    addresses = [f"127.0.0.1:{s.wait_for('ready', deadline)['port']}" for s in servers]
    started = time.monotonic()
    for client, (first, count) in zip(clients, shares(streams, len(clients)), strict=True):
        client.send(cmd="connect", first=first, count=count, servers=addresses)
    deadline = time.monotonic() + CONNECT_DEADLINE
    for client in clients:
        client.wait_for("connected", deadline)
    return time.monotonic() - started


def fire_round(servers: list[Child], clients: list[Child], number: int) -> list[float]:
    """One round: the latency in ms of every stream, from the fire time to its receive."""
    at = time.time() + LEAD_S
    for server in servers:
        server.send(cmd="fire", round=number, at=at)
    deadline = time.monotonic() + LEAD_S + ROUND_DEADLINE
    latencies: list[float] = []
    for client in clients:
        event = client.wait_for("round", deadline)
        if event["round"] != number:
            raise RuntimeError(f"{client.name}: round {event['round']} during round {number}")
        latencies += [(t - at) * 1000 for t in event["t"]]
    return latencies


def ask_all(children: list[Child], command: str, reply: str) -> list[dict[str, Any]]:
    for child in children:
        child.send(cmd=command)
    deadline = time.monotonic() + ROUND_DEADLINE
    return [child.wait_for(reply, deadline) for child in children]


def figures(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": max(values), "min": min(values), "mean": statistics.fmean(values)}


def us_per_message(cpu: list[dict[str, Any]]) -> float:
    """Total CPU over total messages: the mean per message across the processes."""
    return float(sum(c["seconds"] for c in cpu) / max(1, sum(c["messages"] for c in cpu)) * 1e6)


def run(streams: int = 1000, servers: int = 3, clients: int = 4,
        rounds: int = 20) -> dict[str, Any]:
    """The baseline's figures (latencies in ms, CPU in µs per message); see the module doc."""
    if min(servers, clients, rounds) < 1 or streams < clients:
        raise ValueError("need servers, clients, rounds >= 1 and streams >= clients")
    with Cleanup() as cleanup:
        # Start every process at once: their imports overlap.
        server_children = [Child(cleanup, "server", f"server{n}") for n in range(servers)]
        client_children = [Child(cleanup, "client", f"client{n}") for n in range(clients)]
        connect_s = connect(server_children, client_children, streams)
        everyone = server_children + client_children
        fire_round(server_children, client_children, 0)  # warm-up, not counted
        time.sleep(IDLE_S)
        ask_all(everyone, "cpu_begin", "cpu_begun")
        measured: list[list[float]] = []
        for number in range(1, rounds + 1):
            measured.append(fire_round(server_children, client_children, number))
            if number < rounds:
                time.sleep(IDLE_S)
        cpu = ask_all(everyone, "cpu_end", "cpu")
    server_cpu, client_cpu = cpu[:servers], cpu[servers:]
    return {
        "streams": streams, "servers": servers, "clients": clients, "rounds": rounds,
        "message_bytes": MESSAGE_BYTES, "connect_s": connect_s,
        "all_streams_ms": figures([max(r) for r in measured]),
        "median_stream_ms": figures([statistics.median(r) for r in measured]),
        "each_stream_ms": figures([v for r in measured for v in r]),
        "per_round_all_streams_ms": [max(r) for r in measured],
        "server_timer_late_ms": figures([v for c in server_cpu for v in c["late_ms"]]),
        "server_cpu_us_per_msg": us_per_message(server_cpu),
        "client_cpu_us_per_msg": us_per_message(client_cpu),
        "server_cpu_s": [c["seconds"] for c in server_cpu],
        "client_cpu_s": [c["seconds"] for c in client_cpu],
    }


def report(r: dict[str, Any]) -> None:
    print("grpc.aio fan-out baseline: one small message to many streams, no Fusebox code")
    print(machine_line())
    print(f"setup: {r['streams']} bidi streams (one channel object each) in {r['clients']} "
          f"client processes, {r['servers']} grpc.aio server processes, 127.0.0.1; "
          f"{r['message_bytes']}-byte message, {r['rounds']} rounds + 1 warm-up; "
          f"connected in {r['connect_s']:.1f}s")
    print(f"{'ms from fire time to receive':40} {'p50':>7} {'p99':>7} {'max':>7} {'min':>7}")
    for label, name in (("all streams (per round)", "all_streams_ms"),
                        ("median stream (per round)", "median_stream_ms"),
                        ("each stream", "each_stream_ms"),
                        ("server timer lateness (per round)", "server_timer_late_ms")):
        f = r[name]
        print(f"  {label:38} {f['p50']:7.1f} {f['p99']:7.1f} {f['max']:7.1f} {f['min']:7.1f}")
    print(f"CPU per message: servers {r['server_cpu_us_per_msg']:.1f} µs per message sent, "
          f"clients {r['client_cpu_us_per_msg']:.1f} µs per message received")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=3, help="server processes")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=20, help="counted rounds (+1 warm-up)")
    parser.add_argument("--max-seconds", type=int, default=300, help="hard bound on the run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", choices=("server", "client"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child_main(args.child))
        return 0

    with time_bound(args.max_seconds, "--max-seconds"):
        result = run(args.streams, args.servers, args.clients, args.rounds)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
