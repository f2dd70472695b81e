"""The echo protocols of a trial, and the pause schedule that drives them.

The client sends the payload packet by packet, honouring ``pause_writing``;
the server checks what arrives and, when the trial runs both ways, echoes
it back; the client checks the echo.  Each side owns a :class:`ReadGate`,
the one place that calls ``pause_reading()`` and ``resume_reading()`` on
its transport, so that the pause schedule and the server's back-pressure
can both ask for a pause without undoing each other.

Every callback is recorded as an event named after it.  The protocols do
no other work on the hot path than checking bytes (one comparison per
``data_received``) and appending events.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

try:
    import fcntl
    import termios
except ImportError:  # Windows: no FIONREAD ioctl on sockets from Python
    fcntl = termios = None

from racelab.checker import StreamChecker
from racelab.config import Config
from racelab.events import Recorder
from racelab.payload import Payload

__all__ = [
    "EchoClientProtocol",
    "EchoServerProtocol",
    "PauseSchedule",
    "ReadGate",
    "queued_bytes",
]


def queued_bytes(sock: object) -> int:
    """Bytes waiting in *sock*'s kernel receive queue (0 if unknown)."""
    # Transports hand out a TransportSocket wrapper; ask the socket inside.
    sock = getattr(sock, "_sock", sock)
    measure = getattr(sock, "racelab_queued", None)
    if measure is not None:
        return measure()
    if fcntl is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError, AttributeError):
        return 0
    return int.from_bytes(buf, "little", signed=True)


def local_port(transport: asyncio.BaseTransport) -> int:
    sockname = transport.get_extra_info("sockname")
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return int(sockname[1])
    return 0


class ReadGate:
    """Pauses a transport's reading while any reason asks for it.

    A reason is a name such as ``"schedule"`` or ``"backpressure"``.  The
    transport is paused when the first reason is added and resumed when the
    last one is removed.

    It also measures exposure: how many pauses happened, how long reading
    stayed paused, and how many bytes reached this side meanwhile (growth
    of the socket's receive queue, plus bytes ``data_received()`` delivered
    although reading was paused, which a correct transport never does).

    # States: READING -> PAUSED -> READING | CLOSED
    """

    def __init__(self, side: str, recorder: Recorder) -> None:
        self.side = side
        self._recorder = recorder
        self._transport: asyncio.Transport | None = None
        self._sock: object = None
        self._port = 0
        self._reasons: set[str] = set()
        self._paused_at = 0.0
        self._queued_at_pause = 0
        self.pauses = 0
        self.scheduled_pauses = 0
        self.paused_s = 0.0
        self.bytes_while_paused = 0
        self.delivered_while_paused = 0

    def attach(self, transport: asyncio.Transport) -> None:
        # Paused time is on the loop's clock: virtual on a seeded kernel.
        self._time = asyncio.get_running_loop().time
        self._transport = transport
        self._sock = transport.get_extra_info("socket")
        self._port = local_port(transport)

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def pause(self, reason: str) -> None:
        transport = self._transport
        if transport is None or reason in self._reasons:
            return
        if transport.is_closing():
            return  # nothing to pause; and no pause to account for
        self._reasons.add(reason)
        if reason == "schedule":
            self.scheduled_pauses += 1
        if len(self._reasons) > 1:
            return
        self.pauses += 1
        self._paused_at = self._time()
        self._queued_at_pause = queued = queued_bytes(self._sock)
        self._recorder.record(
            self.side, "pause_reading", queued, -1, self._port,
            "reason=" + reason,
        )
        transport.pause_reading()

    def resume(self, reason: str) -> None:
        transport = self._transport
        if transport is None or reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if self._reasons:
            return
        self.paused_s += self._time() - self._paused_at
        queued = queued_bytes(self._sock)
        self.bytes_while_paused += max(0, queued - self._queued_at_pause)
        self._recorder.record(
            self.side, "resume_reading", queued, -1, self._port,
            "reason=" + reason,
        )
        if not transport.is_closing():
            transport.resume_reading()

    def close(self) -> None:
        """Stop counting: the transport is gone."""
        if self._reasons:
            self.paused_s += self._time() - self._paused_at
        self._reasons.clear()
        self._transport = None


class PauseSchedule:
    """Pauses and resumes a :class:`ReadGate` on the config's cadence.

    Reading runs for ``pause_every_ms``, then pauses for ``pause_for_ms``,
    each interval moved by up to ``jitter_ms`` drawn from a generator
    seeded by the trial seed, until :meth:`stop`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        gate: ReadGate,
        config: Config,
        rng: random.Random,
    ) -> None:
        self._loop = loop
        self._gate = gate
        self._every_s = config.pause_every_ms / 1000
        self._for_s = config.pause_for_ms / 1000
        self._jitter_s = config.jitter_ms / 1000
        self._rng = rng
        self._handle: asyncio.TimerHandle | None = None

    def _delay(self, base_s: float) -> float:
        if not self._jitter_s:
            return base_s
        return base_s + self._rng.uniform(-self._jitter_s, self._jitter_s)

    def start(self) -> None:
        self._handle = self._loop.call_later(
            self._delay(self._every_s), self._pause
        )

    def _pause(self) -> None:
        self._gate.pause("schedule")
        self._handle = self._loop.call_later(
            self._delay(self._for_s), self._resume
        )

    def _resume(self) -> None:
        self._gate.resume("schedule")
        self.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._gate.resume("schedule")


class _EchoProtocol(asyncio.Protocol):
    # What the client and the server share: recording the transport
    # callbacks, checking what arrives, reporting fatal surprises.

    side = ""

    def __init__(
        self,
        payload: Payload,
        recorder: Recorder,
        on_error: Callable[[str, BaseException | str], None],
        config: Config,
    ) -> None:
        self.recorder = recorder
        self.config = config
        self.payload = payload
        self.checker = StreamChecker(payload)
        self.gate = ReadGate(self.side, recorder)
        self.transport: asyncio.Transport | None = None
        self.port = 0
        self._received = 0
        self._on_error = on_error
        self.eof = False
        self.closed: asyncio.Future[None] | None = None
        # Called with the protocol once connected; the harness uses it to
        # learn when the server side of the connection exists.
        self.on_connection_made: Callable[[_EchoProtocol], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without
        # subclassing it: duck typing only.
        self.transport = transport
        self.port = local_port(transport)
        self.gate.attach(transport)
        self.closed = asyncio.get_running_loop().create_future()
        high = self.config.write_high_bytes
        low = self.config.write_low_bytes
        if high is not None or low is not None:
            transport.set_write_buffer_limits(high=high, low=low)
        self.recorder.record(self.side, "connection_made", 0, -1, self.port)
        if self.on_connection_made is not None:
            self.on_connection_made(self)

    def data_received(self, data: bytes) -> None:
        checker = self.checker
        expected = checker.cursor
        checker.feed(data)
        size = len(data)
        # The stream offset of the chunk's first byte: where the checker
        # expected it when it continued the stream in step, else where the
        # checker located it (-1 while it cannot tell yet).
        if expected >= 0 and checker.cursor == expected + size:
            offset = expected
        else:
            offset = checker.offset_at(self._received)
        self._received += size
        self.recorder.record(self.side, "data_received", size, offset,
                             self.port)
        if self.gate.paused:
            self.gate.delivered_while_paused += len(data)
            self.gate.bytes_while_paused += len(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.recorder.record(self.side, "eof_received", 0, -1, self.port)
        # Keep the transport open, we close it ourselves; a TLS transport
        # closes anyway, and says so if asked to stay open.
        return not self.config.tls

    def pause_writing(self) -> None:
        self.recorder.record(self.side, "pause_writing", 0, -1, self.port)

    def resume_writing(self) -> None:
        self.recorder.record(self.side, "resume_writing", 0, -1, self.port)

    def connection_lost(self, exc: BaseException | None) -> None:
        detail = "" if exc is None else f"exc={exc!r}"
        self.recorder.record(
            self.side, "connection_lost", 0, -1, self.port, detail
        )
        self.gate.close()
        if exc is not None:
            self._on_error(f"{self.side} connection_lost", exc)
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)


class EchoServerProtocol(_EchoProtocol):
    """Checks the client's stream and, running both ways, echoes it.

    While its write buffer is above the high-water mark the server pauses
    reading (``reason=backpressure``), as a well-behaved echo server does,
    so its memory stays bounded whatever the client does; with
    ``Config.server_backpressure`` false it echoes blindly instead.
    """

    side = "server"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Read once here, not per chunk on the hot path.
        self._echo = self.config.direction == "both"
        self._backpressure = self.config.server_backpressure
        # TLS has no half-close, so the client cannot say "that was all"
        # with EOF: the server ends the session when the payload's last
        # byte arrives.  A loss that takes the last byte makes a hang.
        self._ends_at_last_byte = self.config.tls
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._echo:
            self.transport.write(data)
        if self._ends_at_last_byte and self.checker.cursor == len(
            self.payload
        ):
            self._ends_at_last_byte = False
            self.recorder.record(self.side, "end_of_payload", 0, -1,
                                 self.port)
            self.transport.close()  # flushes the echo, then close_notify

    def eof_received(self) -> bool:
        keep_open = super().eof_received()
        if not keep_open:
            return False  # TLS: no half-close, the transport closes
        if self._echo:
            # write_eof() sends FIN after the buffered echo has drained.
            self.transport.write_eof()
        else:
            self.transport.close()
        return True

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._backpressure:
            self.gate.pause("backpressure")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._backpressure:
            self.gate.resume("backpressure")


class EchoClientProtocol(_EchoProtocol):
    """Sends the payload, honouring flow control, and checks the echo."""

    side = "client"
    _can_write: asyncio.Event | None = None
    finished: asyncio.Future[None] | None = None
    sent_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.finished = loop.create_future()

    async def send_all(self) -> None:
        """Write every packet, waiting while writing is paused, then EOF."""
        assert self.transport is not None and self._can_write is not None
        size = self.config.packet_bytes
        record = self.recorder.record
        view = self.payload.view
        transport = self.transport
        can_write = self._can_write
        port = self.port
        for start in range(0, self.payload.size, size):
            if not can_write.is_set():
                await can_write.wait()
            if transport.is_closing():
                return
            packet = view[start : start + size]
            record("client", "write", len(packet), start, port)
            transport.write(packet)
            self.sent_bytes += len(packet)
        if self.transport.can_write_eof():
            record("client", "write_eof", 0, -1, self.port)
            self.transport.write_eof()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._can_write.clear()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._can_write.set()

    def eof_received(self) -> bool:
        keep_open = super().eof_received()
        if not self.finished.done():
            self.finished.set_result(None)
        return keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self._can_write is not None:
            self._can_write.set()  # wake the sender so that it returns
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)
