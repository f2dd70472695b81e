"""Faulty peers, for checking that racelab notices what it claims to.

Each class is a drop-in ``server_protocol`` for
:func:`racelab.trial.run_trial`.  They misbehave at the protocol level,
above the transport, so they work on every loop kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from racelab.echo import EchoServerProtocol

__all__ = ["DroppingEchoServer", "StallingEchoServer", "wait_until"]


def wait_until(
    condition: Callable[[], object],
    timeout_s: float = 60.0,
    interval_s: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll *condition* until it is true, for at most *timeout_s*.

    For tests that wait on another thread or process: a bounded wait on a
    condition, never a bare sleep.

    Raises:
      AssertionError: *condition* was still false after *timeout_s*
        (naming *what*).
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(interval_s)


class StallingEchoServer(EchoServerProtocol):
    """Echoes the first :attr:`echo_limit` bytes, then stops answering.

    It keeps reading (and checking) but never echoes more and never sends
    EOF, so the client waits until the trial's timeout: a ``hang`` whose
    missing bytes are everything past the limit.
    """

    echo_limit = 65536
    echoed = 0

    def data_received(self, data: bytes) -> None:
        room = self.echo_limit - self.echoed
        super(EchoServerProtocol, self).data_received(data)
        if room > 0:
            self.transport.write(data[:room])
            self.echoed += min(room, len(data))

    def eof_received(self) -> bool:
        self.eof = True
        self.recorder.record(self.side, "eof_received", 0, -1, self.port)
        return True


class DroppingEchoServer(EchoServerProtocol):
    """Leaves out of its echo the bytes in ``[drop_offset, drop_end)``.

    The client sees exactly that range missing from the echo, while the
    upstream stays complete: a loss above the transport, on purpose.
    """

    drop_offset = 100_000
    drop_end = 120_000
    _position = 0

    def data_received(self, data: bytes) -> None:
        start = self._position
        self._position += len(data)
        super(EchoServerProtocol, self).data_received(data)
        lo = max(self.drop_offset - start, 0)
        hi = min(self.drop_end - start, len(data))
        if lo < hi:
            data = data[:lo] + data[hi:]
        if data:
            self.transport.write(data)
