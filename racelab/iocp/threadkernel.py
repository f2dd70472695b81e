"""The thread kernel: real sockets, I/O performed by a kernel thread.

A kernel thread plays the part of Windows' I/O manager.  It waits (with
``poll()``) on the sockets that have posted operations, performs each
operation with a non-blocking call as soon as the socket is ready, and
queues the completion for the loop thread, which dequeues it in
``select()``.  The loop thread never performs a posted operation itself
(unless ``sync_completion`` is on), so an operation can complete at any
moment between two of the loop's steps: that is the race under study.

Rules that keep this honest (each was learned the hard way):

* The kernel thread never resolves a future.  The loop thread does, in
  ``select()``, after releasing the kernel lock, because resolving can
  run code that cancels, which takes the lock.
* An operation changes state only under the kernel lock, and the kernel
  performs the I/O while holding it, so a cancel sees the operation
  either untouched (and aborts it) or completed: never half done.
* Operations are keyed by socket object, never by file descriptor:
  Linux reuses a closed descriptor's number at once.
* The ``poll`` object belongs to the kernel thread alone.

This module uses only the standard library.
"""

from __future__ import annotations

import collections
import errno
import itertools
import select
import socket
import threading
import time
from typing import Any

from racelab.iocp.proactor import (
    ABORTED,
    COMPLETED,
    POSTED,
    READ_KINDS,
    EmulatedProactor,
    Op,
    aborted,
)

__all__ = ["LinuxSocket", "ThreadKernel"]

# Operations that wait for the socket to be readable or writable.

# How long the kernel thread sleeps at most: the safety net for sockets
# closed under a pending operation without a cancel (closing a descriptor
# does not wake a poll() waiting on it).
_POLL_INTERVAL_MS = 100

_POLLIN = getattr(select, "POLLIN", 1)
_POLLOUT = getattr(select, "POLLOUT", 4)

_instances = itertools.count(1)


class LinuxSocket(socket.socket):
    """A socket whose ``shutdown()`` behaves as on Windows.

    The stdlib's ``_call_connection_lost()`` calls ``shutdown(SHUT_RDWR)``
    before ``close()``.  Windows accepts that after the peer has gone;
    Linux raises ENOTCONN, which would skip the ``close()`` and leak the
    socket.  This subclass ignores ENOTCONN, and nothing else.
    """

    __slots__ = ()

    def shutdown(self, how: int) -> None:
        try:
            super().shutdown(how)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise


def adopt(sock: Any) -> None:
    """Give a plain stdlib socket :class:`LinuxSocket`'s ``shutdown()``."""
    # Same slots, same layout: switching the class in place is safe, and
    # it reaches sockets the loop did not create (create_connection()).
    if type(sock) is socket.socket:
        sock.__class__ = LinuxSocket


class ThreadKernel:
    """Performs posted operations on real sockets from a kernel thread.

    Args:
      sync_completion: a receive that finds data waiting, or a send that
        finds room for all its bytes, completes inside the posting call.
    """

    network = "loopback-tcp"

    def __init__(self, *, sync_completion: bool = False) -> None:
        self.sync_completion = sync_completion
        self._lock = threading.Lock()
        self._completed = threading.Condition(self._lock)
        # Pending ops per socket: [reads, writes], each in posting order.
        self._queues: dict[Any, tuple[collections.deque, collections.deque]]
        self._queues = {}
        self._completions: list[Op] = []
        self._proactor: EmulatedProactor | None = None
        self._closing = False
        # The kernel thread sits in poll() while _polling; a post or a
        # cancel then writes one byte to wake it (once: _woken).
        self._polling = False
        self._woken = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run,
            name=f"racelab-iocp-kernel-{next(_instances)}",
            daemon=True,
        )

    def __repr__(self) -> str:
        return (
            f"<ThreadKernel sockets={len(self._queues)}"
            f" queued={len(self._completions)}>"
        )

    def attach(self, proactor: EmulatedProactor) -> None:
        """Report completions to *proactor* and start the thread."""
        self._proactor = proactor
        self._thread.start()

    def time(self) -> float:
        """The loop's clock: ``time.monotonic()``."""
        return time.monotonic()

    def socket(self) -> LinuxSocket:
        """A new TCP socket for the harness (``loop.racelab_socket()``)."""
        return LinuxSocket(socket.AF_INET, socket.SOCK_STREAM)

    # -- called on the loop thread -----------------------------------------

    def post(self, op: Op) -> None:
        """Take *op*; it may complete inside the call if synchronous."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the thread kernel is closed")
            if op.kind == "connect" and not self._start_connect(op):
                return
            reads, writes = self._queues.get(op.sock) or self._new_queues(op)
            queue = reads if op.kind in READ_KINDS else writes

            # Synchronous completion: try the I/O now, as WSARecv does
            # when data is already buffered.  Only at the head of the
            # queue, so that operations on a socket stay in order.
            if (
                self.sync_completion
                and not queue
                and op.kind in ("recv", "recv_into", "send")
            ):
                op.sync = True
                if self._perform(op):
                    return
                op.sync = False

            queue.append(op)
            self._wake()

    def cancel(self, op: Op) -> str:
        """Abort *op* if pending; else say ``"already_completed"``.

        Returns:
          ``"aborted"`` or ``"already_completed"``.
        """
        with self._lock:
            if op.state != POSTED:
                return "already_completed"
            queues = self._queues.get(op.sock)
            if queues is not None:
                for queue in queues:
                    if op in queue:
                        queue.remove(op)
            # The aborted op still comes back through the queue, as an
            # IOCP completion with ERROR_OPERATION_ABORTED does.
            op.state = ABORTED
            self._completions.append(op)
            return "aborted"

    def wait(self, timeout: float | None) -> list[Op]:
        """Dequeue every queued completion, waiting up to *timeout*."""
        with self._completed:
            if not self._completions and timeout != 0:
                self._completed.wait(timeout)
            done = self._completions
            self._completions = []
        return done

    def close(self) -> None:
        """Stop; the proactor has drained every operation before."""
        with self._lock:
            self._closing = True
            self._wake(force=True)
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()
        self._queues.clear()

    # -- helpers, called with the lock held --------------------------------

    def _new_queues(
        self, op: Op
    ) -> tuple[collections.deque, collections.deque]:
        queues = (collections.deque(), collections.deque())
        self._queues[op.sock] = queues
        return queues

    def _wake(self, force: bool = False) -> None:
        if (self._polling or force) and not self._woken:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass  # full: the thread is awake already

    def _complete(self, op: Op) -> None:
        # States: POSTED -> COMPLETED, then the completion is queued.
        op.state = COMPLETED
        self._completions.append(op)
        self._proactor._completed(op)
        self._completed.notify()

    def _fail(self, op: Op, exc: BaseException) -> None:
        op.error = exc
        self._complete(op)

    def _start_connect(self, op: Op) -> bool:
        # Non-blocking connect: EINPROGRESS now, writable later, then the
        # verdict in SO_ERROR.  Returns False if it failed at once.
        sock = op.sock
        try:
            err = sock.connect_ex(op.address)
        except OSError as exc:
            self._fail(op, exc)
            return False
        if err in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            return True
        self._fail(op, OSError(err, errno.errorcode.get(err, str(err))))
        return False

    def _perform(self, op: Op) -> bool:
        # One non-blocking attempt; True when the op is complete (with a
        # result or an error), False when it must wait for readiness.
        sock = op.sock
        if sock.fileno() == -1:
            self._fail(op, aborted())
            return True
        try:
            if op.kind == "recv_into":
                op.nbytes = sock.recv_into(op.buf)
            elif op.kind == "recv":
                op.value = sock.recv(op.size)
                op.nbytes = len(op.value)
            elif op.kind == "send":
                view = op.buf
                # The transport assumes the whole buffer went out: keep
                # sending until it has, or the socket is full.
                while op.sent < len(view):
                    op.sent += sock.send(view[op.sent :])
                op.nbytes = op.sent
            elif op.kind == "accept":
                conn, addr = sock.accept()
                conn = LinuxSocket(
                    conn.family, conn.type, conn.proto, fileno=conn.detach()
                )
                conn.setblocking(False)
                op.value = (conn, addr)
            elif op.kind == "connect":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, errno.errorcode.get(err, str(err)))
                op.value = sock
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.EBADF or sock.fileno() == -1:
                exc = aborted()
            self._fail(op, exc)
            return True
        self._complete(op)
        return True

    def _progress(self, sock: Any) -> None:
        queues = self._queues.get(sock)
        if queues is None:
            return
        for queue in queues:
            while queue and self._perform(queue[0]):
                queue.popleft()
        if not queues[0] and not queues[1]:
            del self._queues[sock]

    def _interest(self) -> dict[int, tuple[Any, int]]:
        # What to poll for: fd -> (socket, events), rebuilt each round.
        # Ops left on closed sockets fail here (ConnectionAbortedError).
        wanted: dict[int, tuple[Any, int]] = {}
        for sock, (reads, writes) in list(self._queues.items()):
            fd = sock.fileno()
            if fd == -1:
                self._progress(sock)
                continue
            events = (_POLLIN if reads else 0) | (_POLLOUT if writes else 0)
            if events:
                wanted[fd] = (sock, events)
        return wanted

    # -- the kernel thread -----------------------------------------------

    def _run(self) -> None:
        wake_fd = self._wake_r.fileno()
        while True:
            with self._lock:
                if self._closing:
                    return
                wanted = self._interest()
                self._polling = True
                self._woken = False
            try:
                ready = _poll(wake_fd, wanted, _POLL_INTERVAL_MS)
            except OSError:
                ready = []
            with self._lock:
                self._polling = False
                for fd in ready:
                    if fd == wake_fd:
                        _drain(self._wake_r)
                    elif fd in wanted:
                        self._progress(wanted[fd][0])


def _poll(
    wake_fd: int, wanted: dict[int, tuple[Any, int]], timeout_ms: int
) -> list[int]:
    # The descriptors ready for what they are wanted for.  A fresh poll
    # object each round: it belongs to this thread alone, and the set
    # changes with every post.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(wake_fd, select.POLLIN)
        for fd, (_, events) in wanted.items():
            poller.register(fd, events)
        return [fd for fd, _ in poller.poll(timeout_ms)]
    # Windows has no poll(): select() on the same sets (untested there).
    readers = [wake_fd] + [
        fd for fd, (_, ev) in wanted.items() if ev & _POLLIN
    ]
    writers = [fd for fd, (_, ev) in wanted.items() if ev & _POLLOUT]
    r, w, x = select.select(readers, writers, writers, timeout_ms / 1000)
    return list(dict.fromkeys(r + w + x))


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


