"""A minimal echo over the emulated proactor, to check the emulation itself.

Trials belong to :mod:`racelab.trial`; this module is smaller on purpose:
it depends on nothing but the standard library and :mod:`racelab.iocp`,
so that any interpreter can check the emulation without the harness::

    python -m racelab.iocp.selfcheck            # both kernels, fixed
    python -m racelab.iocp.selfcheck --transport 2018

The payload is little-endian 8-byte counters, so any received chunk of
16 bytes or more names its own stream offset (:func:`locate`).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import sys
from typing import Any

from racelab.events import Recorder
from racelab.iocp.loop import (
    KERNELS,
    EmulatedProactorEventLoop,
    EmulatedProactorEventLoop2018,
)

__all__ = ["counters", "echo_session", "locate", "lost_ranges", "main"]

_WRITE_BYTES = 16384


def counters(nbytes: int, start: int = 0) -> bytes:
    """Self-locating bytes: the stream of 8-byte counters, [start, +nbytes).

    The stream is little-endian counter *i* at offset ``8 * i``.
    """
    first, skew = divmod(start, 8)
    words = (skew + nbytes + 7) // 8
    data = array.array("Q", range(first, first + words)).tobytes()
    return data[skew : skew + nbytes]


def locate(data: bytes) -> int | None:
    """The stream offset of *data* within :func:`counters`, or None."""
    for skew in range(8):
        words = bytes(data[skew : skew + 16])
        if len(words) < 16:
            return None
        first, second = array.array("Q", words)
        if second == first + 1:
            return first * 8 - skew
    return None


def lost_ranges(chunks: list[bytes], nbytes: int) -> list[tuple[int, int]]:
    """The (offset, length) gaps between received *chunks*, in order.

    Raises:
      AssertionError: a chunk is not the payload at its offset, or arrives
        out of order.
    """
    gaps = []
    expected = 0
    for chunk in chunks:
        offset = locate(chunk)
        assert offset is not None and offset >= expected, (offset, expected)
        assert chunk == counters(len(chunk), offset), offset
        if offset > expected:
            gaps.append((expected, offset - expected))
        expected = offset + len(chunk)
    if expected < nbytes:
        gaps.append((expected, nbytes - expected))
    return gaps


class _Client(asyncio.Protocol):
    def __init__(self, done: asyncio.Future) -> None:
        self.done = done
        self.chunks: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def eof_received(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write_eof()
        return True


async def echo_session(
    loop: EmulatedProactorEventLoop,
    nbytes: int,
    every_s: float,
    for_s: float,
    timeout_s: float = 10.0,
) -> list[bytes]:
    """Echo *nbytes* of counters while the client pauses on a cadence.

    The client reads for *every_s*, pauses for *for_s*, and so on, on
    ``call_later`` timers (virtual time on the deterministic kernel).

    Returns:
      The chunks the client received, in order.
    """
    listener = loop.racelab_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    echoes: list[_Echo] = []

    def new_echo() -> _Echo:
        echoes.append(_Echo())
        return echoes[-1]

    server = await loop.create_server(new_echo, sock=listener)
    sock = loop.racelab_socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, listener.getsockname())
    done = loop.create_future()
    transport, client = await loop.create_connection(
        lambda: _Client(done), sock=sock
    )

    # States: READING -(every_s)-> PAUSED -(for_s)-> READING ...
    handle: Any = None

    def pause() -> None:
        nonlocal handle
        transport.pause_reading()
        handle = loop.call_later(for_s, resume)

    def resume() -> None:
        nonlocal handle
        transport.resume_reading()
        handle = loop.call_later(every_s, pause)

    handle = loop.call_later(every_s, pause)
    data = counters(nbytes)
    for start in range(0, nbytes, _WRITE_BYTES):
        transport.write(data[start : start + _WRITE_BYTES])
    transport.write_eof()

    try:
        await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except asyncio.TimeoutError:
        pass  # the EOF itself was lost: what arrived is the result
    handle.cancel()
    transport.close()
    for echo in echoes:
        echo.transport.close()
    server.close()
    await asyncio.sleep(0)
    return client.chunks


def check(
    kernel: str, transport: str = "fixed", nbytes: int = 2 << 20, seed: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Run one echo session and return (lost ranges, discarded ranges)."""
    cls = (
        EmulatedProactorEventLoop2018
        if transport == "2018"
        else EmulatedProactorEventLoop
    )
    recorder = Recorder()
    loop = cls(kernel, recorder=recorder, seed=seed, locate=locate)
    try:
        chunks = loop.run_until_complete(
            asyncio.wait_for(echo_session(loop, nbytes, 1e-3, 1e-3), 30)
        )
    finally:
        loop.close()
    discarded = sorted(
        (e.offset, e.nbytes)
        for e in recorder.events
        if e.kind == "completion_discarded" and e.nbytes > 0
    )
    return lost_ranges(chunks, nbytes), discarded


def main(argv: list[str] | None = None) -> int:
    """Check each kernel; exit status 1 if a fixed transport lost data."""
    parser = argparse.ArgumentParser(prog="python -m racelab.iocp.selfcheck")
    parser.add_argument("--transport", choices=("fixed", "2018"))
    parser.add_argument("--bytes", type=int, default=2 << 20)
    args = parser.parse_args(argv)
    transport = args.transport or "fixed"
    version = ".".join(map(str, sys.version_info[:3]))
    status = 0
    for kernel in KERNELS:
        lost, discarded = check(kernel, transport, args.bytes)
        agrees = "agrees" if lost == discarded else "DISAGREES"
        verdict = "ok" if not lost else f"lost {sum(n for _, n in lost)} B"
        print(
            f"python {version} kernel {kernel} transport {transport}: "
            f"{verdict}; discarded {agrees}"
        )
        if (lost and transport == "fixed") or lost != discarded:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
