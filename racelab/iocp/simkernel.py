"""The deterministic kernel: a seeded simulation on a virtual clock.

No thread and no real network.  The kernel is a discrete-event simulation
of the I/O manager and of the TCP connections between
:class:`~racelab.iocp.simnet.SimSocket` objects, driven from the loop
thread at the proactor's entry points (posting, cancelling, ``select()``).
Every choice it makes comes from one ``random.Random`` seeded with
``LoopOptions.seed``, and time is virtual: the loop's ``time()`` follows
:meth:`DeterministicKernel.time`, so ``call_later`` timers (the pause
cadence, the trial timeout) run on the same clock.  A seed therefore
replays the same trial: the same events in the same order, the same bytes
lost.

How time passes (see :class:`SimParams`):

* Each time the loop enters the proactor, the clock advances by the CPU
  time the loop spent since its last entry: a random step, plus a
  per-byte charge for the received bytes it was handed.  The charge for a
  read lands *after* the loop posts its next read, as in the stdlib's
  ``_loop_reading()``, which posts the next read before it delivers data.
* The kernel runs "concurrently": on each entry it first performs every
  kernel event due by the new time.  An operation becomes due a random
  latency after it became possible (data arrived, room appeared).  So a
  cancel can find the operation already completed, exactly when the loop
  spent longer since posting than the kernel took to complete it.
* When the loop waits and nothing is queued, the clock jumps to the next
  kernel event, or to the loop's timeout when nothing can happen before.

The loop's self-pipe is a real socket pair; the kernel polls it (without
waiting) when the simulation is idle and every few waits, and blocks on it
only when nothing simulated can ever happen.  A thread calling
``call_soon_threadsafe()`` therefore works, but its timing is not part of
the replay.

This module uses only the standard library.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import os
import random
import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from racelab.iocp.proactor import (
    ABORTED,
    COMPLETED,
    POSTED,
    READ_KINDS,
    RECEIVE_KINDS,
    EmulatedProactor,
    Op,
    aborted,
)
from racelab.iocp.simnet import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    FIRST_FD,
    FIRST_PORT,
    LISTENING,
    NEW,
    SimSocket,
)

__all__ = ["DeterministicKernel", "SimParams"]


# Poll the real self-pipe once every this many busy waits.
_REAL_POLL_EVERY = 64


@dataclass(frozen=True)
class SimParams:
    """The timing model of the deterministic kernel.

    The defaults are rough figures for CPython on a laptop over loopback;
    they shape loss rates (see docs/emulation.md), so a study that depends
    on them should vary them.
    """

    loop_step_s: tuple[float, float] = (2e-6, 10e-6)
    """CPU time of the loop between two proactor calls: uniform in this
    range."""
    loop_ns_per_byte: float = 1.0
    """Extra loop CPU time per received byte handed to a transport."""
    kernel_latency_s: float = 10e-6
    """Mean (exponential) delay between an operation becoming possible and
    the kernel completing it."""
    wire_latency_s: float = 5e-6
    """One-way delay of the simulated loopback."""
    bandwidth_bytes_per_s: float = 4e9
    """Rate at which a connection moves bytes from send to receive
    buffer."""
    segment_bytes: int = 65483
    """Most bytes moved at once (the loopback MTU's TCP payload)."""
    syn_retry_s: float = 1.0
    """When a listener's backlog is full the SYN is dropped and retried
    after this long (Linux's initial retransmission timeout)."""


class DeterministicKernel:
    """Performs posted operations on simulated sockets, on a virtual clock.

    Args:
      seed: seeds every choice the kernel makes.
      sync_completion: a receive that finds data waiting, or a send that
        finds room for all its bytes, completes inside the posting call.
      params: the timing model.
    """

    network = "simulated"

    def __init__(
        self,
        seed: int = 0,
        *,
        sync_completion: bool = False,
        params: SimParams | None = None,
    ) -> None:
        self.seed = seed
        self.sync_completion = sync_completion
        self.params = params or SimParams()
        # A string seed hashes the same on every run and platform, and
        # keeps this generator apart from the payload's, seeded by the
        # same integer.
        self._rng = random.Random(f"racelab.iocp.simkernel:{seed}")
        self._now = 0.0
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()
        self._completions: list[Op] = []
        # Loop CPU time owed for received bytes, charged at a later entry.
        self._debt_s = 0.0
        self._ports = itertools.count(FIRST_PORT)
        self._fds = itertools.count(FIRST_FD)
        self._bound: dict[int, SimSocket] = {}
        self._listeners: dict[int, SimSocket] = {}
        # Ops on real sockets: the loop's self-pipe.
        self._real: list[Op] = []
        self._waits = 0
        self._proactor: EmulatedProactor | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<DeterministicKernel seed={self.seed} t={self._now:.6f}"
            f" events={len(self._heap)}>"
        )

    def attach(self, proactor: EmulatedProactor) -> None:
        """Report completions to *proactor*."""
        self._proactor = proactor

    def time(self) -> float:
        """The virtual clock, in seconds since the kernel was made."""
        return self._now

    def socket(self) -> SimSocket:
        """A new simulated TCP socket (``loop.racelab_socket()``)."""
        return SimSocket(self, next(self._fds))

    # -- the proactor's entry points ----------------------------------------

    def post(self, op: Op) -> None:
        """Take *op*; it may complete inside the call if synchronous."""
        # The charge for bytes just handed over is deferred past a read's
        # post: _loop_reading() posts its next read, then delivers data.
        self._enter(defer_debt=op.kind in RECEIVE_KINDS)
        sock = op.sock
        if not isinstance(sock, SimSocket):
            self._post_real(op)
            return
        if sock.fileno() == -1:
            self._fail(op, aborted())
            return
        if op.kind == "connect":
            self._start_connect(op)
            return
        if op.kind == "accept" and sock.state != LISTENING:
            self._fail(op, _oserror(errno.EINVAL))
            return
        if op.kind != "accept" and sock.state not in (CONNECTED, CLOSED):
            self._fail(op, _oserror(errno.ENOTCONN))
            return

        queue = sock.reads if op.kind in READ_KINDS else sock.writes
        if (
            self.sync_completion
            and not queue
            and op.kind in ("recv", "recv_into", "send")
        ):
            op.sync = True
            if self._attempt(op):
                if op.kind in RECEIVE_KINDS:
                    self._charge(op)
                return
            op.sync = False
        queue.append(op)
        self._wake(sock, queue)

    def cancel(self, op: Op) -> str:
        """Abort *op* if pending; else say ``"already_completed"``.

        Returns:
          ``"aborted"`` or ``"already_completed"``.
        """
        # The cancel travels to a kernel that kept running meanwhile: let
        # it catch up first.  This ordering is the race of bpo-33694.
        self._enter()
        if op.state != POSTED:
            return "already_completed"
        if op in self._real:
            self._real.remove(op)
        elif isinstance(op.sock, SimSocket):
            for queue in (op.sock.reads, op.sock.writes):
                if op in queue:
                    queue.remove(op)
        op.state = ABORTED
        self._completions.append(op)
        return "aborted"

    def wait(self, timeout: float | None) -> list[Op]:
        """Dequeue every queued completion, waiting up to *timeout*."""
        # The loop computed *timeout* from the clock before this entry.
        deadline = math.inf if timeout is None else self._now + timeout
        self._enter()
        self._waits += 1
        if self._real and (
            not self._completions or self._waits % _REAL_POLL_EVERY == 0
        ):
            self._poll_real(0)

        while not self._completions and timeout != 0:
            if self._heap and self._heap[0][0] <= deadline:
                self._run_until(self._heap[0][0])
            elif deadline == math.inf:
                # Nothing simulated can ever happen: only another thread
                # (or a signal) can wake the loop, through its self-pipe.
                if not self._real:
                    raise RuntimeError(
                        "deterministic kernel: the loop waits forever and "
                        "nothing can wake it"
                    )
                self._poll_real(None)
            else:
                self._now = max(self._now, deadline)
                break

        done = self._completions
        self._completions = []
        for op in done:
            if op.kind in RECEIVE_KINDS and op.state == COMPLETED:
                if not op.sync and not op.future.cancelled():
                    self._charge(op)
        return done

    def advance(self, seconds: float) -> None:
        """Let the kernel run for *seconds* of virtual time by itself.

        As if the loop were busy elsewhere: operations complete and their
        completions queue up, but nothing is dequeued.  For tests that
        need a completion waiting in the queue.
        """
        self._run_until(self._now + seconds)

    def close(self) -> None:
        """Stop; the proactor has drained every operation before."""
        self._closed = True
        self._heap.clear()
        self._real.clear()

    # -- socket calls (SimSocket) -------------------------------------------

    def bind(self, sock: SimSocket, host: str, port: int) -> tuple[str, int]:
        self._catch_up()
        if port == 0:
            port = next(self._ports)
            while port in self._bound:
                port = next(self._ports)
        elif port in self._bound:
            raise _oserror(errno.EADDRINUSE)
        self._bound[port] = sock
        return (host, port)

    def listen(self, sock: SimSocket) -> None:
        self._listeners[sock.local[1]] = sock

    def buffer_changed(self, sock: SimSocket) -> None:
        # A bigger buffer may let stalled data or writes move on.
        self._catch_up()
        self._wake(sock, sock.reads)
        self._wake(sock, sock.writes)
        self._kick(sock)
        if sock.peer is not None:
            self._kick(sock.peer)

    def shutdown_write(self, sock: SimSocket) -> None:
        self._catch_up()
        # States: sending -> FIN pending (data still queued) -> FIN sent.
        sock.fin_pending = True
        self._kick(sock)

    def close_socket(self, sock: SimSocket) -> None:
        self._catch_up()
        was = sock.state
        sock.state = CLOSED
        for queue in (sock.reads, sock.writes):
            while queue:
                self._fail(queue.popleft(), aborted())
        if self._bound.get(sock.local[1] if sock.local else -1) is sock:
            del self._bound[sock.local[1]]

        if was == LISTENING:
            del self._listeners[sock.local[1]]
            while sock.backlog:
                conn = sock.backlog.popleft()
                conn.state = CLOSED
                if conn.peer is not None:
                    self._reset(conn.peer)
        elif was in (CONNECTED, CONNECTING) and sock.peer is not None:
            if sock.rcvq:
                # Closing with unread data aborts the connection (Linux
                # sends RST, not FIN): the peer's next call fails.
                sock.rcvq.clear()
                sock.sndq.clear()
                self._reset(sock.peer)
            else:
                # Like an orphaned Linux socket: queued data still goes
                # out, then the FIN.
                sock.fin_pending = True
                self._kick(sock)

    # -- the clock ----------------------------------------------------------

    def _enter(self, defer_debt: bool = False) -> None:
        low, high = self.params.loop_step_s
        step = self._rng.uniform(low, high)
        if not defer_debt:
            step += self._debt_s
            self._debt_s = 0.0
        self._run_until(self._now + step)

    def _charge(self, op: Op) -> None:
        self._debt_s += op.nbytes * self.params.loop_ns_per_byte * 1e-9

    def _catch_up(self) -> None:
        self._run_until(self._now)

    def _run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _, action, arg = heapq.heappop(heap)
            # Handlers schedule relative to their own time, not the
            # loop's; the clock returns to t afterwards.
            self._now = when
            action(arg)
        self._now = t

    def _schedule(
        self, delay: float, action: Callable[[Any], None], arg: Any
    ) -> None:
        heapq.heappush(
            self._heap, (self._now + delay, next(self._seq), action, arg)
        )

    def _latency(self) -> float:
        return self._rng.expovariate(1.0 / self.params.kernel_latency_s)

    # -- operations ---------------------------------------------------------

    def _complete(self, op: Op) -> None:
        # States: POSTED -> COMPLETED, then the completion is queued.
        op.state = COMPLETED
        self._completions.append(op)
        self._proactor._completed(op)

    def _fail(self, op: Op, exc: BaseException) -> None:
        op.error = exc
        self._complete(op)

    def _wake(self, sock: SimSocket, queue: Any) -> None:
        # Schedule an attempt at the head op if it could progress now.
        if not queue:
            return
        op = queue[0]
        if op.waiting or not self._possible(op):
            return
        op.waiting = True
        self._schedule(self._latency(), self._attempt_head, op)

    def _attempt_head(self, op: Op) -> None:
        op.waiting = False
        if op.state != POSTED:
            return  # aborted meanwhile
        sock = op.sock
        queue = sock.reads if op.kind in READ_KINDS else sock.writes
        if not queue or queue[0] is not op:
            return
        if self._attempt(op):
            queue.popleft()
            self._wake(sock, queue)

    def _possible(self, op: Op) -> bool:
        sock = op.sock
        if sock.state == CLOSED:
            return True  # fails at once
        if op.kind == "accept":
            return bool(sock.backlog)
        if op.kind == "send":
            return (
                sock.reset
                or sock.fin_pending
                or len(sock.sndq) < sock.snd_capacity
            )
        return bool(sock.rcvq or sock.eof or sock.reset or sock.read_shut)

    def _attempt(self, op: Op) -> bool:
        # Perform what the op can do now; True when it completed.
        sock = op.sock
        if sock.state == CLOSED:
            self._fail(op, aborted())
            return True
        if op.kind == "accept":
            if not sock.backlog:
                return False
            conn = sock.backlog.popleft()
            op.value = (conn, conn.remote)
        elif op.kind == "send":
            if sock.reset:
                self._fail(op, _oserror(errno.ECONNRESET))
                return True
            if sock.fin_pending:
                self._fail(op, _oserror(errno.EPIPE))
                return True
            room = sock.snd_capacity - len(sock.sndq)
            n = min(room, op.size - op.sent)
            if n > 0:
                sock.sndq += op.buf[op.sent : op.sent + n]
                op.sent += n
                self._kick(sock)
            if op.sent < op.size:
                return False
            op.nbytes = op.sent
        elif sock.rcvq:
            size = op.size
            n = min(size, len(sock.rcvq))
            if op.kind == "recv_into":
                memoryview(op.buf)[:n] = sock.rcvq[:n]
            else:
                op.value = bytes(sock.rcvq[:n])
            del sock.rcvq[:n]
            op.nbytes = n
            # Room in the receive buffer lets the peer's data move on.
            if sock.peer is not None:
                self._kick(sock.peer)
        elif sock.eof or sock.read_shut:
            op.nbytes = 0
            op.value = b""
        elif sock.reset:
            self._fail(op, _oserror(errno.ECONNRESET))
            return True
        else:
            return False
        self._complete(op)
        return True

    # -- connections --------------------------------------------------------

    def _start_connect(self, op: Op) -> None:
        sock = op.sock
        if sock.state != NEW:
            self._fail(op, _oserror(errno.EISCONN))
            return
        # States: NEW -> CONNECTING -(SYN reaches the listener)->
        # accepted, queued in its backlog -(SYN-ACK)-> CONNECTED.
        sock.state = CONNECTING
        self._schedule(self.params.wire_latency_s, self._syn_arrives, op)

    def _syn_arrives(self, op: Op) -> None:
        if op.state != POSTED:
            return
        sock = op.sock
        host, port = op.address[0], op.address[1]
        listener = self._listeners.get(port)
        if listener is None or listener.state != LISTENING:
            sock.state = NEW
            self._fail(op, _oserror(errno.ECONNREFUSED))
            return
        if len(listener.backlog) >= listener.backlog_max:
            self._schedule(self.params.syn_retry_s, self._syn_arrives, op)
            return

        if sock.local[0] in ("0.0.0.0", ""):
            sock.local = (host, sock.local[1])
        conn = SimSocket(self, next(self._fds))
        conn.local = (host, port)
        conn.remote = sock.local
        # Accepted sockets inherit the listener's buffer sizes.
        conn.rcvbuf_bytes = listener.rcvbuf_bytes
        conn.sndbuf_bytes = listener.sndbuf_bytes
        conn.sndbuf_set = listener.sndbuf_set
        conn.connected()
        conn.peer = sock
        sock.peer = conn
        sock.remote = (host, port)
        listener.backlog.append(conn)
        self._wake(listener, listener.reads)
        self._schedule(self.params.wire_latency_s, self._established, op)

    def _established(self, op: Op) -> None:
        sock = op.sock
        if op.state != POSTED:
            # Connect cancelled or socket closed: tear the other half down.
            if sock.peer is not None:
                self._reset(sock.peer)
            return
        sock.connected()
        op.value = sock
        self._complete(op)
        self._kick(sock)

    def _kick(self, src: SimSocket | None) -> None:
        # Start moving src's queued bytes (or its FIN) to its peer.
        if src is None or src.pump_scheduled or src.peer is None:
            return
        if src.sndq or (src.fin_pending and not src.fin_sent):
            src.pump_scheduled = True
            self._schedule(self.params.wire_latency_s, self._pump, src)

    def _pump(self, src: SimSocket) -> None:
        src.pump_scheduled = False
        dst = src.peer
        if dst.state == CLOSED:
            # Nobody will read: the peer answers with RST.
            if src.sndq:
                src.sndq.clear()
                self._reset(src)
            if src.fin_pending:
                src.fin_sent = True
            return

        room = dst.rcv_capacity - len(dst.rcvq)
        n = min(len(src.sndq), room, self.params.segment_bytes)
        if n > 0:
            dst.rcvq += src.sndq[:n]
            del src.sndq[:n]
            self._wake(dst, dst.reads)
            self._wake(src, src.writes)
        if not src.sndq and src.fin_pending and not src.fin_sent:
            # Invariant: the FIN arrives after every byte sent before it.
            src.fin_sent = True
            dst.eof = True
            self._wake(dst, dst.reads)
        if src.sndq and room > n:
            src.pump_scheduled = True
            delay = n / self.params.bandwidth_bytes_per_s
            self._schedule(delay, self._pump, src)
        # Otherwise the receive buffer is full: dst's next read kicks us.

    def _reset(self, sock: SimSocket) -> None:
        sock.reset = True
        sock.sndq.clear()
        self._wake(sock, sock.reads)
        self._wake(sock, sock.writes)

    # -- the real self-pipe ---------------------------------------------------

    def _post_real(self, op: Op) -> None:
        if op.kind not in RECEIVE_KINDS:
            raise TypeError(
                "the deterministic kernel runs on simulated sockets only "
                f"(loop.racelab_socket()); cannot {op.kind} on {op.sock!r}"
            )
        self._real.append(op)

    def _poll_real(self, timeout: float | None) -> None:
        for op in [op for op in self._real if op.sock.fileno() == -1]:
            self._real.remove(op)
            self._fail(op, aborted())
        if not self._real:
            return
        ready, _, _ = select.select(
            [op.sock for op in self._real], [], [], timeout
        )
        for op in list(self._real):
            if op.sock not in ready:
                continue
            try:
                if op.kind == "recv_into":
                    op.nbytes = op.sock.recv_into(op.buf)
                else:
                    op.value = op.sock.recv(op.size)
                    op.nbytes = len(op.value)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                op.error = exc
            self._real.remove(op)
            self._complete(op)


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


