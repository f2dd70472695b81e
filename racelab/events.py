"""Timestamped events: what the transports, protocols and kernel did.

A trial records every callback it sees as an :class:`Event`: a flat tuple
with a monotonic nanosecond timestamp, so that a timeline reads like the
callbacks that produced it and converts to a table column by column.

Recording sits on the hot path of every ``data_received()``, so it is one
``list.append`` of a tuple and nothing else.  ``list.append`` is atomic
under the GIL, which lets the emulated proactor's kernel thread record into
the same timeline as the loop thread.
"""

from __future__ import annotations

import time
from typing import NamedTuple

__all__ = ["Event", "EVENT_FIELDS", "Recorder", "SIDES"]

# Who produced an event.  "kernel" is the (real or emulated) I/O layer
# below the transports; "harness" is racelab itself (timeouts, trial end).
SIDES = ("client", "server", "kernel", "harness")


class Event(NamedTuple):
    """One timestamped record of a timeline.

    Fields that do not apply hold ``0``, ``-1`` or ``""`` so that every
    column of an event table has a single type.
    """

    t_ns: int
    """When the event was recorded: ``time.monotonic_ns()``, or the loop's
    virtual clock on a simulated network (see :attr:`Recorder.clock`)."""
    side: str
    """One of :data:`SIDES`."""
    kind: str
    """What happened, in asyncio's verbs: ``data_received``,
    ``pause_reading``, ``connection_lost``, ... or a kernel verb such as
    ``completion_discarded``."""
    nbytes: int = 0
    """Bytes involved (received, written, completed, discarded)."""
    offset: int = -1
    """Payload stream offset of the first byte involved, or -1."""
    port: int = 0
    """Local port of the socket involved, or 0."""
    detail: str = ""
    """Anything else, as short ``key=value`` text."""


EVENT_FIELDS = Event._fields


class Recorder:
    """Collects the events of one trial, in the order they happen.

    Args:
      enabled: when false, :meth:`record` does nothing, so that the cost of
        recording can be measured against not recording.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: Nanoseconds now.  A loop on virtual time sets its own clock
        #: here, so that a timeline shows the time the loop lived in.
        self.clock = time.monotonic_ns
        # Plain tuples in Event's field order: building a NamedTuple costs
        # a Python-level call per event, a plain tuple does not.  They
        # become Events when :attr:`events` is read.
        self._raw: list[tuple] = []
        self._events: list[Event] = []
        self._append = self._raw.append
        if not enabled:
            self.record = self._discard  # type: ignore[method-assign]

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"<Recorder {state} events={len(self._raw)}>"

    def __len__(self) -> int:
        return len(self._raw)

    @property
    def events(self) -> list[Event]:
        """The events so far, in recorded order."""
        done = len(self._events)
        if done != len(self._raw):
            self._events.extend(map(Event._make, self._raw[done:]))
        return self._events

    def record(
        self,
        side: str,
        kind: str,
        nbytes: int = 0,
        offset: int = -1,
        port: int = 0,
        detail: str = "",
    ) -> None:
        """Append one event stamped with :attr:`clock`."""
        self._append(
            (self.clock(), side, kind, nbytes, offset, port, detail)
        )

    def _discard(self, *args: object, **kwargs: object) -> None:
        pass

    def count(self, kind: str, side: str | None = None) -> int:
        """Number of recorded events of *kind* (from *side*, if given)."""
        return sum(
            1
            for e in self.events
            if e.kind == kind and (side is None or e.side == side)
        )
