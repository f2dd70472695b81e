"""An emulated IOCP proactor, to rerun bpo-33694 on Linux.

bpo-33694 (2018): on Windows, asyncio's proactor socket transport
silently lost received bytes.  It keeps one overlapped ``WSARecv`` posted;
``pause_reading()`` cancelled it; when the receive had already completed
in the kernel, the cancel could not stop it, the future was marked
cancelled anyway, and the loop threw the completion (with its bytes) away
when it dequeued it.  The fix stopped cancelling on pause.

This package runs the standard library's proactor loop and transports,
unchanged, on an emulated IOCP:

* :mod:`~racelab.iocp.proactor`: the proactor the loop calls, its
  overlapped futures and completion queue, and the kernel events.
* :mod:`~racelab.iocp.threadkernel`: a kernel thread doing real I/O on
  loopback TCP (kernel ``"thread"``).
* :mod:`~racelab.iocp.simkernel` and :mod:`~racelab.iocp.simnet`: a
  seeded simulation on a virtual clock over an in-memory network, which
  replays a trial exactly (kernel ``"deterministic"``).
* :mod:`~racelab.iocp.loop`: the event loops (today's transport, and the
  3.7.0-beta one from :mod:`~racelab.iocp.transport2018`).
* :mod:`~racelab.iocp.windows`: the same two transports on the real
  ``ProactorEventLoop``, on Windows.

Loss rates measured here are properties of the emulation, not of Windows:
see docs/emulation.md.

Kernel event kinds, recorded with side ``"kernel"`` and the socket's local
port: ``op_posted``, ``op_completed``, ``op_dequeued``,
``cancel_requested``, ``completion_discarded``.

This package uses only the standard library.
"""

from __future__ import annotations

from typing import Any

from racelab.iocp.loop import (
    KERNELS,
    EmulatedProactorEventLoop,
    EmulatedProactorEventLoop2018,
)
from racelab.iocp.proactor import EmulatedProactor, OverlappedFuture
from racelab.iocp.simkernel import DeterministicKernel, SimParams
from racelab.iocp.simnet import SimSocket
from racelab.iocp.threadkernel import ThreadKernel
from racelab.iocp.transport2018 import ProactorSocketTransport2018

__all__ = [
    "EVENT_KINDS",
    "KERNELS",
    "DeterministicKernel",
    "EmulatedProactor",
    "EmulatedProactorEventLoop",
    "EmulatedProactorEventLoop2018",
    "OverlappedFuture",
    "ProactorSocketTransport2018",
    "SimParams",
    "SimSocket",
    "ThreadKernel",
    "new_emulated_loop",
]

#: The kinds of kernel events the emulated proactor records.
EVENT_KINDS = (
    "op_posted",
    "op_completed",
    "op_dequeued",
    "cancel_requested",
    "completion_discarded",
)


def new_emulated_loop(
    options: Any = None, *, transport: str = "fixed"
) -> EmulatedProactorEventLoop:
    """A new emulated proactor loop configured from ``LoopOptions``.

    Args:
      options: a :class:`racelab.loops.LoopOptions` (recorder, seed,
        kernel, locate, sync_completion); None for the defaults.
      transport: ``"fixed"`` (today's stdlib transport) or ``"2018"``
        (pause cancels the posted read).

    Raises:
      ValueError: unknown *transport* or kernel.
    """
    if transport == "fixed":
        cls = EmulatedProactorEventLoop
    elif transport == "2018":
        cls = EmulatedProactorEventLoop2018
    else:
        raise ValueError(
            f"transport must be 'fixed' or '2018' (got {transport!r})"
        )
    if options is None:
        return cls()
    return cls(
        options.kernel,
        recorder=options.recorder,
        seed=options.seed,
        locate=options.locate,
        sync_completion=getattr(options, "sync_completion", False),
    )
