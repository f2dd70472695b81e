"""The emulated IOCP proactor: operations, overlapped futures, completions.

:class:`EmulatedProactor` offers what asyncio's
``BaseProactorEventLoop`` and its socket transports call on Windows'
``IocpProactor`` (``recv``, ``recv_into``, ``send``, ``accept``,
``connect``, ``select``, ``_stop_serving``, ``close``), with the
semantics that bpo-33694 turned on:

* Every call *posts* an operation and returns an :class:`OverlappedFuture`
  at once.  A kernel (:mod:`racelab.iocp.threadkernel` or
  :mod:`racelab.iocp.simkernel`) performs the operation later and queues
  its completion; ``select()`` dequeues completions and only then
  resolves their futures, as ``IocpProactor._poll()`` does.
* Cancelling the future of an operation the kernel has not performed
  aborts it: no bytes move.  Cancelling one whose completion is already
  queued cannot stop it: the future is cancelled anyway, and when
  ``select()`` dequeues the completion it throws it away, bytes and all.
  That is what ``Overlapped.cancel()`` amounted to in 2018, whether
  ``CancelIoEx`` was skipped or failed with ``ERROR_NOT_FOUND``.
* With ``sync_completion``, a receive that finds data waiting (or a send
  that finds room) completes inside the call, and its future is resolved
  before the call returns, as ``IocpProactor._register()`` does when
  ``WSARecv`` succeeds at once.  Its completion is still queued and
  dequeued later, and ignored.

Every step is recorded as a kernel event (side ``"kernel"``, port = the
socket's local port): ``op_posted``, ``op_completed``, ``op_dequeued``,
``cancel_requested`` and ``completion_discarded``.  Operations on sockets
without a port (the loop's self-pipe, an ``AF_UNIX`` pair) are not
recorded.

This module uses only the standard library.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from racelab.events import Recorder

__all__ = [
    "ABORTED",
    "COMPLETED",
    "DEQUEUED",
    "EmulatedProactor",
    "Kernel",
    "Op",
    "OverlappedFuture",
    "POSTED",
    "RECEIVE_KINDS",
]

logger = logging.getLogger("racelab")

# Operation states.  An operation moves only forward, and only the kernel
# moves it out of POSTED (under its lock, for the thread kernel):
#
# States: POSTED -> COMPLETED -> DEQUEUED
#         POSTED -> ABORTED -> DEQUEUED      (cancelled while pending)
#
# Invariant: every posted operation is dequeued exactly once, through the
# completion queue, even when aborted; close() waits for that.
POSTED = "posted"
COMPLETED = "completed"
ABORTED = "aborted"
DEQUEUED = "dequeued"

#: Operations whose completion carries received bytes.
RECEIVE_KINDS = frozenset({"recv", "recv_into"})

# Operations that wait for the socket to be readable (the rest wait for
# it to be writable).
READ_KINDS = RECEIVE_KINDS | {"accept"}


def aborted() -> ConnectionAbortedError:
    """The error of an operation whose socket was closed under it."""
    return ConnectionAbortedError(
        errno.ECONNABORTED, "the socket was closed under a pending operation"
    )


class Op:
    """One overlapped operation, from post to dequeue.

    The kernel fills in the outcome (``nbytes``, ``value`` or ``error``)
    when it completes the operation; the proactor reads it when it
    dequeues the completion.
    """

    __slots__ = (
        "id",
        "kind",
        "sock",
        "port",
        "buf",
        "size",
        "address",
        "state",
        "sync",
        "nbytes",
        "value",
        "error",
        "sent",
        "future",
        "snapshot",
        "waiting",
    )

    def __init__(
        self,
        op_id: int,
        kind: str,
        sock: Any,
        port: int | None,
        *,
        buf: Any = None,
        size: int = 0,
        address: Any = None,
    ) -> None:
        self.id = op_id
        self.kind = kind
        self.sock = sock
        self.port = port
        # recv_into: the caller's buffer; send: the bytes to send.
        self.buf = buf
        # Bytes asked for: len(buf), or recv's nbytes.
        self.size = size
        self.address = address
        self.state = POSTED
        self.sync = False  # completed inside the posting call
        self.nbytes = 0
        self.value: Any = None
        self.error: BaseException | None = None
        self.sent = 0  # send: bytes handed to the network so far
        self.future: OverlappedFuture | None = None
        # Received bytes, copied when the op is cancelled after completing,
        # before anything else can reuse its buffer.
        self.snapshot: bytes | None = None
        # Kernel bookkeeping: a completion attempt is already scheduled.
        self.waiting = False

    def __repr__(self) -> str:
        return f"<Op {self.id} {self.kind} {self.state}>"

    def result(self) -> Any:
        """What the operation's future resolves to, as on Windows."""
        if self.kind in ("recv_into", "send"):
            return self.nbytes
        return self.value


class Kernel(Protocol):
    """What :class:`EmulatedProactor` needs from a kernel.

    A kernel performs posted operations and queues their completions.  It
    must call ``proactor._completed(op)`` each time it completes one (for
    the ``op_completed`` event), and never resolve a future itself.
    """

    network: str

    def attach(self, proactor: EmulatedProactor) -> None: ...

    def time(self) -> float: ...

    def post(self, op: Op) -> None: ...

    def cancel(self, op: Op) -> str: ...

    def wait(self, timeout: float | None) -> list[Op]: ...

    def socket(self) -> Any: ...

    def close(self) -> None: ...


class OverlappedFuture(asyncio.Future):
    """The future of one emulated overlapped operation.

    Like ``windows_events._OverlappedFuture``: :meth:`cancel` first asks
    the kernel to cancel the operation, then cancels the future whatever
    the kernel answered.
    """

    def __init__(
        self, proactor: EmulatedProactor, op: Op, *, loop: Any
    ) -> None:
        super().__init__(loop=loop)
        self._proactor = proactor
        self._op: Op | None = op

    @property
    def op(self) -> Op | None:
        """The operation, until the future is resolved or cancelled."""
        return self._op

    def _repr_info(self) -> list[str]:
        info = super()._repr_info()
        op = self._op
        if op is not None:
            info.insert(1, f"overlapped=<{op.state} op={op.id} {op.kind}>")
        return info

    def cancel(self, msg: Any = None) -> bool:
        op = self._op
        self._op = None
        if op is not None and not self.done():
            self._proactor._cancel(op)
        return super().cancel(msg=msg)


class EmulatedProactor:
    """An IOCP-style proactor for ``BaseProactorEventLoop``, on a kernel.

    Args:
      kernel: performs the operations (see :class:`Kernel`).
      recorder: receives the kernel events.
      locate: ``locate(data)`` gives the payload stream offset of
        discarded bytes for ``completion_discarded`` events.
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        recorder: Recorder | None = None,
        locate: Callable[[bytes], int | None] | None = None,
    ) -> None:
        self._kernel = kernel
        self._recorder = recorder if recorder is not None else Recorder(False)
        self._locate = locate
        self._loop: Any = None
        self._ids = itertools.count(1)
        # Posted and not yet dequeued, by op id: IocpProactor._cache.
        self._live: dict[int, Op] = {}
        self._stopped_serving: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ports: weakref.WeakKeyDictionary[Any, int] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False
        self._stats = dict.fromkeys(
            (
                "posted",
                "completed_sync",
                "aborted",
                "discarded",
                "discarded_bytes",
                "dequeued",
            ),
            0,
        )
        kernel.attach(self)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<EmulatedProactor network={self._kernel.network}"
            f" live={len(self._live)}{state}>"
        )

    @property
    def kernel(self) -> Kernel:
        """The kernel performing this proactor's operations."""
        return self._kernel

    def statistics(self) -> dict[str, int]:
        """Counts of posted, aborted and discarded operations so far."""
        return dict(self._stats, live=len(self._live))

    def set_loop(self, loop: Any) -> None:
        """Resolve futures on *loop* (called by the loop)."""
        self._loop = loop

    def time(self) -> float:
        """The kernel's clock: virtual on the deterministic kernel."""
        return self._kernel.time()

    # -- the calls the stdlib proactor loop and transports make ------------

    def select(self, timeout: float | None = None) -> list[asyncio.Future]:
        """Dequeue completions, waiting up to *timeout*; resolve futures.

        Returns:
          The futures resolved by this call (the loop ignores them).
        """
        resolved = []
        for op in self._kernel.wait(timeout):
            fut = self._finish(op)
            if fut is not None:
                resolved.append(fut)
        return resolved

    def recv(self, conn: Any, nbytes: int, flags: int = 0) -> asyncio.Future:
        """Post a receive of up to *nbytes*; the future gives the bytes."""
        _check_flags(flags)
        return self._post(Op(0, "recv", conn, self._port(conn), size=nbytes))

    def recv_into(self, conn: Any, buf: Any, flags: int = 0) -> asyncio.Future:
        """Post a receive into *buf*; the future gives the byte count."""
        _check_flags(flags)
        op = Op(0, "recv_into", conn, self._port(conn), buf=buf, size=len(buf))
        return self._post(op)

    def send(self, conn: Any, buf: Any, flags: int = 0) -> asyncio.Future:
        """Post a send of all of *buf*; the future gives its length."""
        _check_flags(flags)
        # The transport hands over bytes or a bytearray it no longer
        # touches; a view lets the kernel send it piecewise without copies.
        data = memoryview(buf).cast("B")
        op = Op(0, "send", conn, self._port(conn), buf=data, size=len(data))
        return self._post(op)

    def accept(self, listener: Any) -> asyncio.Future:
        """Post an accept; the future gives ``(conn, address)``."""
        return self._post(Op(0, "accept", listener, self._port(listener)))

    def connect(self, conn: Any, address: Any) -> asyncio.Future:
        """Post a connect (binding first); the future gives *conn*."""
        # ConnectEx needs a bound socket; bind first (as IocpProactor does
        # with BindLocal) so the op's events carry the local port.
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            try:
                bound = conn.getsockname()[1] != 0
            except OSError:
                bound = False
            if not bound:
                host = "::" if conn.family == socket.AF_INET6 else "0.0.0.0"
                conn.bind((host, 0))
        op = Op(0, "connect", conn, self._port(conn), address=address)
        return self._post(op)

    def sendfile(self, sock: Any, file: Any, offset: int, count: int) -> Any:
        """Not emulated: loop.sendfile() falls back to sends."""
        # Raising this makes loop.sendfile() fall back to plain sends.
        raise asyncio.SendfileNotAvailableError(
            "the emulated proactor does not emulate TransmitFile"
        )

    def recvfrom(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the emulated proactor is TCP only")

    recvfrom_into = sendto = recvfrom

    def _stop_serving(self, obj: Any) -> None:
        # BaseProactorEventLoop closes the socket right after; completions
        # still queued for it are cancelled when dequeued, as in _poll().
        self._stopped_serving.add(obj)

    def _unregister(self, ov: Any) -> None:
        # Windows' ProactorEventLoop.run_forever() calls this for its
        # self-pipe read; here every op comes back through the queue.
        pass

    def close(self) -> None:
        """Cancel every live operation, drain the queue, stop the kernel.

        As ``IocpProactor.close()`` does, wait until every posted operation
        has come back through the completion queue, so that no accepted
        socket or buffer is left with the kernel.
        """
        if self._closed:
            return
        for op in list(self._live.values()):
            fut = op.future
            if fut is not None and not fut.done():
                fut.cancel()
        rounds = 0
        while self._live:
            for op in self._kernel.wait(0.1):
                self._finish(op)
            rounds += 1
            if rounds >= 50:
                logger.warning(
                    "%r: %d operations never came back; closing anyway",
                    self,
                    len(self._live),
                )
                break
        self._closed = True
        self._kernel.close()
        self._live.clear()

    # -- internals ------------------------------------------------------

    def _port(self, sock: Any) -> int | None:
        # The port names the socket in events; None means "do not record"
        # (the loop's self-pipe is an AF_UNIX pair).
        port = self._ports.get(sock)
        if port is not None:
            return port
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            port = sock.getsockname()[1]
        except (OSError, AttributeError, TypeError):
            return 0
        if port:
            self._ports[sock] = port
        return port

    def _record(
        self,
        kind: str,
        op: Op,
        nbytes: int = 0,
        offset: int = -1,
        detail: str = "",
    ) -> None:
        if op.port is None:
            return
        self._recorder.record(
            "kernel",
            kind,
            nbytes,
            offset,
            op.port,
            detail or f"op={op.id} kind={op.kind}",
        )

    def _post(self, op: Op) -> asyncio.Future:
        if self._closed:
            raise RuntimeError("the emulated proactor is closed")
        op.id = next(self._ids)
        fut = OverlappedFuture(self, op, loop=self._loop)
        op.future = fut
        self._live[op.id] = op
        self._stats["posted"] += 1

        # Record before handing the op over: the thread kernel may complete
        # it (and record op_completed) before post() returns.
        self._record("op_posted", op, op.size)
        self._kernel.post(op)

        if op.sync:
            # Completed inside the call: resolve now, as _register() does
            # when the overlapped is not pending.  Its completion is still
            # queued and will be dequeued (and ignored) later.
            self._stats["completed_sync"] += 1
            self._resolve(op)
        return fut

    def _completed(self, op: Op) -> None:
        # Called by the kernel (maybe on its own thread) as it completes
        # an op; recording is a list append, atomic under the GIL.
        if op.port is None:
            return
        detail = f"op={op.id} kind={op.kind}"
        if op.sync:
            detail += " sync=1"
        if op.error is not None:
            detail += f" error={type(op.error).__name__}"
        self._recorder.record(
            "kernel", "op_completed", op.nbytes, -1, op.port, detail
        )

    def _cancel(self, op: Op) -> None:
        # Called by OverlappedFuture.cancel() while the future is pending.
        if self._closed or op.state == DEQUEUED:
            return
        result = self._kernel.cancel(op)
        nbytes = 0
        if result == "already_completed":
            nbytes = op.nbytes
            if op.kind in RECEIVE_KINDS and op.error is None:
                # Copy the bytes now: once the transport posts its next
                # read into the same buffer, they are gone.
                if op.kind == "recv_into":
                    op.snapshot = bytes(memoryview(op.buf)[: op.nbytes])
                else:
                    op.snapshot = bytes(op.value)
        else:
            self._stats["aborted"] += 1
        self._record(
            "cancel_requested",
            op,
            nbytes,
            detail=f"op={op.id} result={result}",
        )

    def _resolve(self, op: Op) -> None:
        fut = op.future
        fut._op = None
        if op.error is not None:
            fut.set_exception(op.error)
        else:
            fut.set_result(op.result())

    def _finish(self, op: Op) -> asyncio.Future | None:
        # One dequeued completion: what IocpProactor._poll() does with it.
        self._live.pop(op.id, None)
        self._stats["dequeued"] += 1
        fut = op.future
        was = op.state
        op.state = DEQUEUED
        resolved = None

        if was == ABORTED:
            status = "aborted"
        elif op.sync:
            status = "ignored"  # resolved when posted
        elif fut.cancelled():
            status = "cancelled"
        elif op.sock in self._stopped_serving:
            # _poll() cancels futures of sockets that stopped serving.
            fut._op = None
            asyncio.Future.cancel(fut)
            status = "cancelled"
        else:
            self._resolve(op)
            status = "error" if op.error is not None else "ok"
            resolved = fut

        self._record(
            "op_dequeued",
            op,
            op.nbytes,
            detail=f"op={op.id} kind={op.kind} status={status}",
        )
        if status == "cancelled" and op.error is None:
            self._discard(op)
        return resolved

    def _discard(self, op: Op) -> None:
        # The completion of a cancelled future: its outcome is thrown away.
        if op.kind == "accept":
            conn = op.value[0]
            conn.close()  # IocpProactor's accept_coro does the same
        elif op.kind not in RECEIVE_KINDS:
            return  # a send's bytes left anyway; nothing was lost
        data = op.snapshot
        if data is None and op.kind == "recv_into":
            data = bytes(memoryview(op.buf)[: op.nbytes])
        elif data is None and op.kind == "recv":
            data = bytes(op.value)
        self._stats["discarded"] += 1
        self._stats["discarded_bytes"] += op.nbytes
        detail = f"op={op.id} kind={op.kind}"
        if op.kind in RECEIVE_KINDS and op.nbytes == 0:
            detail += " eof=1"  # an end-of-stream thrown away
        if not data or self._locate is None:
            self._record("completion_discarded", op, op.nbytes, -1, detail)
            return

        # One event per contiguous run of the payload.  A read can span a
        # gap made upstream (the server lost bytes, so its echo skips
        # them); a single offset could not say where such bytes belong.
        runs = _runs(data, self._locate)
        for i, (_, offset, length) in enumerate(runs, 1):
            more = f" run={i}/{len(runs)}" if len(runs) > 1 else ""
            self._record(
                "completion_discarded", op, length, offset, detail + more
            )


def _runs(
    data: bytes, locate: Callable[[bytes], int | None]
) -> list[tuple[int, int, int]]:
    # Split *data* into (start in data, stream offset, length) runs, each
    # located by *locate*; what cannot be located is one run at -1.
    runs = []
    pos = 0
    while pos < len(data):
        rest = memoryview(data)[pos:]
        offset = locate(rest)
        if offset is not None:
            runs.append((pos, offset, len(rest)))
            break
        # Find a prefix that locates, halving; then the longest one that
        # still locates to the same offset, by bisection.
        # Invariant: rest[:good] locates to offset; rest[:bad] does not.
        bad, good = len(rest), len(rest) // 2
        offset = None
        while good >= _MIN_RUN_BYTES:
            offset = locate(rest[:good])
            if offset is not None:
                break
            bad, good = good, good // 2
        if offset is None:
            runs.append((pos, -1, len(rest)))
            break
        while bad - good > 1:
            mid = (good + bad) // 2
            if locate(rest[:mid]) == offset:
                good = mid
            else:
                bad = mid
        runs.append((pos, offset, good))
        pos += good
    return runs


# Prefixes shorter than this are not searched for: a short run may occur
# in many places of a payload.  Payload.locate accepts a run too short to
# hold a header only if it occurs exactly once, and 16 bytes (its
# VERIFY_BYTES) is where the checker starts trusting a run too.
_MIN_RUN_BYTES = 16


def _check_flags(flags: int) -> None:
    if flags:
        raise ValueError(f"flags must be 0 (got {flags!r})")
