"""The real IOCP proactor (Windows only), with either transport.

``proactor`` is ``asyncio.ProactorEventLoop`` as shipped;
``proactor-2018`` is the same loop making the 3.7.0-beta transport
(:mod:`racelab.iocp.transport2018`).  Neither records kernel events: the
real ``IocpProactor`` offers no hook for them, and racelab does not patch
it.

This module uses only the standard library; importing it works anywhere,
building a loop only on Windows.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from racelab.iocp.transport2018 import ProactorSocketTransport2018

__all__ = ["new_proactor_loop", "unavailable"]


def unavailable() -> str | None:
    """Why the real proactor cannot be built here, or None."""
    if sys.platform != "win32":
        return (
            "the real IOCP proactor exists only on Windows (this is "
            f"{sys.platform}); use 'emulated-proactor' instead"
        )
    return None


def new_proactor_loop(transport: str = "fixed") -> asyncio.AbstractEventLoop:
    """A new ``asyncio.ProactorEventLoop``, or its 2018 variant.

    Args:
      transport: ``"fixed"`` (the stdlib's) or ``"2018"``.

    Raises:
      RuntimeError: not on Windows.
      ValueError: unknown *transport*.
    """
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if transport == "fixed":
        return asyncio.ProactorEventLoop()
    if transport == "2018":
        return _proactor_2018_class()()
    raise ValueError(
        f"transport must be 'fixed' or '2018' (got {transport!r})"
    )


def _proactor_2018_class() -> type:
    # Defined on demand: asyncio.ProactorEventLoop exists only on Windows.
    class ProactorEventLoop2018(asyncio.ProactorEventLoop):  # type: ignore
        """Windows' proactor loop making the 3.7.0-beta transport."""

        def _make_socket_transport(
            self,
            sock: Any,
            protocol: Any,
            waiter: Any = None,
            extra: Any = None,
            server: Any = None,
        ) -> Any:
            return ProactorSocketTransport2018(
                self, sock, protocol, waiter, extra, server
            )

    return ProactorEventLoop2018
