"""The proactor socket transport as the 3.7.0 betas had it (bpo-33694).

In Python 3.7.0b1 to b5, ``pause_reading()`` cancelled the overlapped
read the transport keeps posted, and ``resume_reading()`` posted a new
one.  When the read had already completed in the kernel but its
completion was still queued, the cancel could not stop it: the future was
marked cancelled, and the loop threw the completion, bytes and all, away
when it dequeued it.  The fix (3.7.0 final, bpo-33694) stopped cancelling:
the posted read completes, the transport holds its bytes while paused and
delivers them on resume.

:class:`ProactorSocketTransport2018` subclasses the *running* Python's
``_ProactorSocketTransport`` and overrides only pause and resume, so that
everything else (writing, closing, end of stream) is today's code and the
comparison isolates the one change.

This module uses only the standard library.
"""

from __future__ import annotations

from asyncio import proactor_events
from asyncio.log import logger

__all__ = ["ProactorSocketTransport2018"]


class ProactorSocketTransport2018(proactor_events._ProactorSocketTransport):
    """A proactor socket transport whose ``pause_reading()`` cancels.

    Written from the description of bpo-33694, not copied from the betas:
    pause cancels the in-flight read, resume posts a new one.
    """

    # States: READING (a read posted) -> PAUSED (read cancelled, none
    # posted) -> READING (a new read posted) | CLOSED

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True

        fut = self._read_fut
        if fut is not None and not fut.done():
            # The bug under study: this cancel loses the bytes of a read
            # the kernel has completed but the loop has not yet dequeued.
            #
            # Unhook the callback before cancelling: today's
            # _loop_reading() asserts that the future it is called with is
            # the current read, which a cancelled one no longer is.  A
            # read that is done (its callback queued) is left alone, as
            # the betas did; the base class holds its data while paused.
            self._read_fut = None
            fut.remove_done_callback(self._loop_reading)
            fut.cancel()

        if self._loop.get_debug():
            logger.debug("%r pauses reading (cancelling the read)", self)

    def resume_reading(self) -> None:
        # The base class posts a new read when none is in flight (which,
        # after our pause, is always), and delivers data held while
        # paused.
        super().resume_reading()
