"""``racelab bench``: what the harness costs, measured side by side.

Three ways of moving the same workload (N packets echoed both ways over
127.0.0.1, no pauses) on the same loop kind, interleaved round by round so
that a noisy neighbour slows all three alike:

* racelab with its event timeline recorded;
* racelab with recording off (the checker still checks every byte);
* a bare asyncio echo protocol pair that only counts bytes.

It prints trials per second for each and the ratios to bare.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from racelab.config import Config
from racelab.loops import new_loop
from racelab.payload import Payload
from racelab.trial import run_trial

__all__ = ["bare_echo_trial", "main"]


class _BareServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        self.transport.write_eof()
        return True


class _BareClient(asyncio.Protocol):
    def __init__(self, expected: int, done: asyncio.Future) -> None:
        self.expected = expected
        self.received = 0
        self.done = done
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += len(data)

    def eof_received(self):
        if not self.done.done():
            self.done.set_result(self.received)
        return True

    def pause_writing(self):
        self.can_write.clear()

    def resume_writing(self):
        self.can_write.set()


async def _bare(packets: int, packet_bytes: int) -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_BareServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    done = loop.create_future()
    transport, client = await loop.create_connection(
        lambda: _BareClient(packets * packet_bytes, done), "127.0.0.1", port
    )
    # The same bytes racelab sends, so that both move the same workload
    # from the same memory.
    view = Payload(0, packets * packet_bytes).view
    for start in range(0, packets * packet_bytes, packet_bytes):
        if not client.can_write.is_set():
            await client.can_write.wait()
        transport.write(view[start : start + packet_bytes])
    transport.write_eof()
    received = await asyncio.wait_for(done, 60)
    transport.close()
    server.close()
    await server.wait_closed()
    return received


def bare_echo_trial(loop_kind: str, packets: int, packet_bytes: int) -> str:
    """One bare echo session on a fresh loop of *loop_kind*; returns
    ``"complete"`` or what went short."""
    loop = new_loop(loop_kind)
    try:
        received = loop.run_until_complete(_bare(packets, packet_bytes))
    finally:
        loop.close()
    if received != packets * packet_bytes:
        return f"short: {received} of {packets * packet_bytes} bytes"
    return "complete"


def main(loop_kind: str, rounds: int, packets: int, packet_bytes: int) -> int:
    config = Config(
        loop=loop_kind, packets=packets, packet_bytes=packet_bytes,
        pause_every_ms=0,
    )
    ways = {
        "racelab, recording on": lambda: run_trial(
            config, record=True
        ).outcome,
        "racelab, recording off": lambda: run_trial(
            config, record=False
        ).outcome,
        "bare asyncio echo": lambda: bare_echo_trial(
            loop_kind, packets, packet_bytes
        ),
    }
    for way in ways.values():  # warm up: payload cache, imports
        way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    surprises: set[str] = set()
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            result = way()
            times[name].append(time.perf_counter() - started)
            if result not in ("inconclusive", "clean", "complete"):
                surprises.add(f"{name}: {result}")
    bare = statistics.median(times["bare asyncio echo"])
    mib = packets * packet_bytes / 2**20
    print(
        f"loop {loop_kind}: {packets} x {packet_bytes} B echoed both ways "
        f"({mib:.1f} MiB each way), median of {rounds} interleaved rounds"
    )
    for name, samples in times.items():
        median = statistics.median(samples)
        print(
            f"  {name:<24} {1 / median:7.2f} trials/s  "
            f"{mib / median:8.1f} MiB/s  {bare / median:5.2f}x bare"
        )
    for surprise in sorted(surprises):
        # A loop that loses data moves less of it: timings then compare
        # unlike workloads.
        print(f"  note: not every session moved every byte ({surprise})")
    return 0
