"""Event loops: asyncio's proactor loop on the emulated IOCP.

:class:`EmulatedProactorEventLoop` is the standard library's
``BaseProactorEventLoop``, unchanged in everything the transports do,
plus what Windows' ``ProactorEventLoop`` adds and what Linux needs:

* It posts the first read on its self-pipe when it starts running, as
  Windows' ``ProactorEventLoop.run_forever()`` does (the base class does
  not, and without it ``call_soon_threadsafe()`` never wakes the loop),
  and cancels it when it stops.
* ``time()`` follows the kernel's clock: virtual on the deterministic
  kernel.
* ``racelab_socket()`` hands out sockets of the kernel's network.
* Sockets given to transports get a ``shutdown()`` that, as on Windows,
  does not fail once the peer has gone (Linux raises ENOTCONN, and the
  stdlib's ``_call_connection_lost()`` would then skip ``close()``).
* A main-thread loop installs its self-pipe as the signal wakeup fd, as
  the base class does, and on ``close()`` puts back the one it replaced
  instead of leaving none.

:class:`EmulatedProactorEventLoop2018` differs only in the transport it
makes: :class:`~racelab.iocp.transport2018.ProactorSocketTransport2018`.

This module uses only the standard library.
"""

from __future__ import annotations

import os
import signal
import threading
from asyncio import base_events, proactor_events
from collections.abc import Callable
from typing import Any

from racelab.events import Recorder
from racelab.iocp import threadkernel
from racelab.iocp.proactor import EmulatedProactor
from racelab.iocp.simkernel import DeterministicKernel, SimParams
from racelab.iocp.threadkernel import ThreadKernel
from racelab.iocp.transport2018 import ProactorSocketTransport2018

__all__ = [
    "KERNELS",
    "EmulatedProactorEventLoop",
    "EmulatedProactorEventLoop2018",
    "make_kernel",
]

KERNELS = ("thread", "deterministic")

# 3.13 moved run_forever()'s set-up and tear-down into these two hooks,
# which Windows' ProactorEventLoop overrides; before, it overrode
# run_forever() itself.  Do whichever this Python's Windows loop does.
_HAS_RUN_HOOKS = hasattr(base_events.BaseEventLoop, "_run_forever_setup")


def make_kernel(
    kernel: str,
    *,
    seed: int = 0,
    sync_completion: bool = False,
    params: SimParams | None = None,
) -> Any:
    """Build the kernel named *kernel*.

    Args:
      kernel: ``"thread"`` or ``"deterministic"``.
      seed: seeds the deterministic kernel (the thread kernel has no
        choices to seed).
      sync_completion: see :class:`~racelab.iocp.threadkernel.ThreadKernel`.
      params: the deterministic kernel's timing model.

    Raises:
      ValueError: *kernel* is not one of :data:`KERNELS`.
    """
    if kernel == "thread":
        return ThreadKernel(sync_completion=sync_completion)
    if kernel == "deterministic":
        return DeterministicKernel(
            seed, sync_completion=sync_completion, params=params
        )
    known = ", ".join(repr(k) for k in KERNELS)
    raise ValueError(f"kernel must be one of {known} (got {kernel!r})")


class EmulatedProactorEventLoop(proactor_events.BaseProactorEventLoop):
    """asyncio's proactor event loop and transports on the emulated IOCP.

    Args:
      kernel: ``"thread"`` (real loopback sockets, a kernel thread does
        the I/O) or ``"deterministic"`` (simulated network, seeded,
        virtual time).
      recorder: receives kernel events.
      seed: seeds the deterministic kernel.
      locate: ``locate(data)``, the payload offset of discarded bytes.
      sync_completion: receives and sends that can complete at once do,
        inside the call, as on Windows.
      params: the deterministic kernel's timing model.

    Raises:
      ValueError: unknown *kernel*.
    """

    _transport_class: Callable[..., Any] = (
        proactor_events._ProactorSocketTransport
    )

    def __init__(
        self,
        kernel: str = "thread",
        *,
        recorder: Recorder | None = None,
        seed: int = 0,
        locate: Callable[[bytes], int | None] | None = None,
        sync_completion: bool = False,
        params: SimParams | None = None,
    ) -> None:
        self._kernel = make_kernel(
            kernel, seed=seed, sync_completion=sync_completion, params=params
        )
        self._clock = self._kernel.time
        self.kernel_name = kernel
        proactor = EmulatedProactor(
            self._kernel, recorder=recorder, locate=locate
        )
        # The base class replaces the main thread's wakeup fd without
        # keeping the old one; read it first, to put it back on close().
        self._previous_wakeup_fd = -1
        if threading.current_thread() is threading.main_thread():
            self._previous_wakeup_fd = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        try:
            super().__init__(proactor)
        except BaseException:
            proactor.close()
            raise

    @property
    def network(self) -> str:
        """``"loopback-tcp"`` or ``"simulated"``."""
        return self._kernel.network

    def time(self) -> float:
        return self._clock()

    def racelab_socket(self) -> Any:
        """A new TCP socket on this loop's network, for the trial harness.

        Returns:
          A :class:`~racelab.iocp.simnet.SimSocket` on the deterministic
          kernel, a real socket on the thread kernel.
        """
        return self._kernel.socket()

    def statistics(self) -> dict[str, int]:
        """The emulated proactor's counts (posted, aborted, discarded...)."""
        if self._proactor is None:
            return {}
        return self._proactor.statistics()

    def _make_socket_transport(
        self,
        sock: Any,
        protocol: Any,
        waiter: Any = None,
        extra: Any = None,
        server: Any = None,
    ) -> Any:
        threadkernel.adopt(sock)
        return self._transport_class(
            self, sock, protocol, waiter, extra, server
        )

    # Windows' ProactorEventLoop posts the first self-pipe read when the
    # loop starts and cancels it when it stops; the base class does not.
    if _HAS_RUN_HOOKS:

        def _run_forever_setup(self) -> None:
            assert self._self_reading_future is None
            self.call_soon(self._loop_self_reading)
            super()._run_forever_setup()

        def _run_forever_cleanup(self) -> None:
            super()._run_forever_cleanup()
            self._stop_self_reading()

    else:

        def run_forever(self) -> None:
            try:
                assert self._self_reading_future is None
                self.call_soon(self._loop_self_reading)
                super().run_forever()
            finally:
                self._stop_self_reading()

    def _stop_self_reading(self) -> None:
        # Its completion, if queued, is discarded on the next select() or
        # by the proactor's close().
        if self._self_reading_future is not None:
            self._self_reading_future.cancel()
            self._self_reading_future = None

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        main = threading.current_thread() is threading.main_thread()
        mine = self._csock.fileno() if self._csock is not None else -1
        current = signal.set_wakeup_fd(-1) if main else -1
        super().close()
        if not main:
            return
        # Put back what was there: someone else's fd installed after ours,
        # or the one ours replaced.
        restore = current if current != mine else self._previous_wakeup_fd
        if restore != -1 and _fd_is_open(restore):
            try:
                signal.set_wakeup_fd(restore)
            except (ValueError, OSError):
                pass


class EmulatedProactorEventLoop2018(EmulatedProactorEventLoop):
    """The emulated proactor loop with the 3.7.0-beta transport.

    Its socket transports cancel their read on ``pause_reading()``
    (bpo-33694); everything else is :class:`EmulatedProactorEventLoop`.
    """

    _transport_class = ProactorSocketTransport2018


def _fd_is_open(fd: int) -> bool:
    # XXX A closed fd's number may have been reused by then; restoring
    # onto it would be wrong, and we cannot tell.  Only an open fd is
    # put back.
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
