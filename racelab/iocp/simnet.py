"""The simulated network of the deterministic kernel: in-memory TCP sockets.

A :class:`SimSocket` offers what the trial harness and asyncio's
``create_server(sock=)``, ``create_connection(sock=)``, ``sock_connect()``
and proactor transports call on a socket: ``bind``, ``listen``,
``setblocking``, ``getsockname``/``getpeername``, ``setsockopt``/
``getsockopt``, ``shutdown``, ``close``, ``fileno``.  It has no blocking
I/O methods: data moves only through operations posted to the emulated
proactor, which :mod:`racelab.iocp.simkernel` performs.

Buffers follow Linux's bookkeeping, without autotuning:

* ``setsockopt(SO_RCVBUF, n)`` stores ``max(2 * min(n, rmem_max),
  2304)`` and ``getsockopt`` reads that back, as Linux does (the doubled
  half is its allowance for bookkeeping); ``SO_SNDBUF`` likewise with
  ``wmem_max`` and a 4608-byte floor.  ``rmem_max`` and ``wmem_max`` are
  Linux's compiled-in defaults (212992), not this host's sysctls, so that
  a seed replays the same on every machine.
* Unset, a socket reads back Linux's initial TCP sizes (``SO_RCVBUF``
  131072, ``SO_SNDBUF`` 16384).  Once connected, an unset ``SO_SNDBUF``
  grows to ``tcp_wmem[2]`` (4194304), roughly what Linux's send-buffer
  autotuning reaches on loopback at once; the receive buffer does not
  grow (Linux grows it only as the reader keeps up).
* The payload a buffer holds is half the value read back: the advertised
  window with Linux's default ``tcp_adv_win_scale``.

Ports come from a counter starting at Linux's first ephemeral port, and
descriptors from a counter far above any real one, so both are the same
on every run.

This module uses only the standard library.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from racelab.iocp.simkernel import DeterministicKernel

__all__ = [
    "DEFAULT_RCVBUF",
    "AUTOTUNED_SNDBUF",
    "DEFAULT_SNDBUF",
    "RMEM_MAX",
    "SimSocket",
    "WMEM_MAX",
]

#: Linux's compiled-in net.core.rmem_max and wmem_max.
RMEM_MAX = WMEM_MAX = 212992
#: What an untouched Linux TCP socket reads back (tcp_rmem[1], tcp_wmem[1]).
DEFAULT_RCVBUF = 131072
DEFAULT_SNDBUF = 16384
#: What an unset SO_SNDBUF grows to once connected (tcp_wmem[2]).
AUTOTUNED_SNDBUF = 4194304
_MIN_RCVBUF = 2304
_MIN_SNDBUF = 4608

FIRST_PORT = 32768  # net.ipv4.ip_local_port_range starts here
FIRST_FD = 1 << 20  # above any real descriptor, so never confused with one

# Socket states.
#
# States: NEW -> LISTENING -> CLOSED
#         NEW -> CONNECTING -> CONNECTED -> CLOSED
#         (accepted sockets are born CONNECTED)
NEW = "new"
LISTENING = "listening"
CONNECTING = "connecting"
CONNECTED = "connected"
CLOSED = "closed"


def _oserror(code: int) -> OSError:
    # OSError(errno, text) builds the matching subclass (ConnectionReset...).
    return OSError(code, os.strerror(code))


class SimSocket:
    """A TCP socket of the simulated network.

    Built by ``loop.racelab_socket()`` on a deterministic-kernel loop, or
    by the kernel for an accepted connection.
    """

    def __init__(self, kernel: DeterministicKernel, fd: int) -> None:
        self._kernel = kernel
        self._fd = fd
        self._timeout: float | None = None
        self._options: dict[tuple[int, int], int] = {}
        self.state = NEW
        self.local: tuple[str, int] | None = None
        self.remote: tuple[str, int] | None = None
        self.peer: SimSocket | None = None
        self.sndbuf_bytes = DEFAULT_SNDBUF
        self.sndbuf_set = False  # set by setsockopt: no autotuning
        self.rcvbuf_bytes = DEFAULT_RCVBUF
        # Bytes written and not yet moved to the peer; bytes received and
        # not yet read.  Both bounded by half their buffer size.
        self.sndq = bytearray()
        self.rcvq = bytearray()
        self.fin_pending = False  # shutdown(SHUT_WR) or close(): FIN next
        self.fin_sent = False
        self.eof = False  # the peer's FIN arrived, after all its data
        self.reset = False  # the peer is gone: writes fail
        self.read_shut = False
        self.backlog: collections.deque[SimSocket] = collections.deque()
        self.backlog_max = 0
        # Pending operations, in posting order.
        self.reads: collections.deque = collections.deque()
        self.writes: collections.deque = collections.deque()
        self.pump_scheduled = False

    def __repr__(self) -> str:
        parts = [f"<SimSocket fd={self.fileno()} {self.state}"]
        if self.local:
            parts.append(f"laddr={self.local}")
        if self.remote:
            parts.append(f"raddr={self.remote}")
        return " ".join(parts) + ">"

    # What asyncio reads to decide that this is a TCP socket.  proto 0, as
    # socket.socket(AF_INET, SOCK_STREAM) has on Linux.
    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = 0

    @property
    def rcv_capacity(self) -> int:
        return self.rcvbuf_bytes // 2

    @property
    def snd_capacity(self) -> int:
        return self.sndbuf_bytes // 2

    def connected(self) -> None:
        """Enter CONNECTED; an unset send buffer autotunes."""
        self.state = CONNECTED
        if not self.sndbuf_set:
            self.sndbuf_bytes = AUTOTUNED_SNDBUF

    def racelab_queued(self) -> int:
        """Bytes received and not yet read (Linux's SIOCINQ)."""
        return len(self.rcvq)

    def fileno(self) -> int:
        return self._fd

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def bind(self, address: tuple[str, int]) -> None:
        self._check_open()
        if self.local is not None:
            raise _oserror(errno.EINVAL)
        host, port = address[0] or "0.0.0.0", address[1]
        self.local = self._kernel.bind(self, host, port)

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self.state not in (NEW, LISTENING):
            raise _oserror(errno.EINVAL)
        if self.local is None:
            self.bind(("0.0.0.0", 0))
        self.backlog_max = max(1, backlog)
        if self.state == NEW:
            self.state = LISTENING
            self._kernel.listen(self)

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        return self.local or ("0.0.0.0", 0)

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        if self.remote is None or self.state != CONNECTED:
            raise _oserror(errno.ENOTCONN)
        return self.remote

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        self._check_open()
        value = (
            int.from_bytes(value, "little")
            if isinstance(value, (bytes, bytearray))
            else int(value)
        )
        if (level, option) == (socket.SOL_SOCKET, socket.SO_RCVBUF):
            self.rcvbuf_bytes = max(2 * min(value, RMEM_MAX), _MIN_RCVBUF)
            self._kernel.buffer_changed(self)
        elif (level, option) == (socket.SOL_SOCKET, socket.SO_SNDBUF):
            self.sndbuf_bytes = max(2 * min(value, WMEM_MAX), _MIN_SNDBUF)
            self.sndbuf_set = True
            self._kernel.buffer_changed(self)
        else:
            # TCP_NODELAY, SO_REUSEADDR, SO_KEEPALIVE...: kept, no effect.
            self._options[(level, option)] = value

    def getsockopt(
        self, level: int, option: int, buflen: int | None = None
    ) -> Any:
        self._check_open()
        if (level, option) == (socket.SOL_SOCKET, socket.SO_RCVBUF):
            value = self.rcvbuf_bytes
        elif (level, option) == (socket.SOL_SOCKET, socket.SO_SNDBUF):
            value = self.sndbuf_bytes
        elif (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR):
            value = 0
        elif (level, option) == (socket.SOL_SOCKET, socket.SO_TYPE):
            value = int(socket.SOCK_STREAM)
        else:
            value = self._options.get((level, option), 0)
        if buflen is not None:
            return value.to_bytes(buflen, "little")
        return value

    def shutdown(self, how: int) -> None:
        """Half-close; after the peer has gone it succeeds, as on Windows.

        Raises:
          OSError: ENOTCONN if the socket never connected.
        """
        self._check_open()
        if self.state != CONNECTED:
            raise _oserror(errno.ENOTCONN)
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self.read_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._kernel.shutdown_write(self)

    def close(self) -> None:
        if self._fd == -1:
            return
        self._fd = -1
        self._kernel.close_socket(self)

    def detach(self) -> int:
        raise OSError("a simulated socket has no descriptor to detach")

    def __enter__(self) -> SimSocket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._fd == -1:
            raise _oserror(errno.EBADF)
