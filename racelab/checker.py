"""Check one direction's received bytes against the payload, to the byte.

A :class:`StreamChecker` is fed what ``data_received()`` delivers, chunk by
chunk, in order of arrival.  While the bytes are exactly the next expected
stream bytes, a feed costs one ``memcmp`` against the payload and a cursor
update.  On the first byte that is not, the checker buffers what it cannot
explain and *resynchronises*: it looks for the next payload header in the
buffered bytes, checks the bytes around it against the payload, and so
splits the received bytes into *segments*:

- a *located run*: received bytes equal to the payload's bytes at some
  stream offset;
- *garbage*: received bytes that locate nowhere.

:meth:`StreamChecker.report` turns the segments into a
:class:`StreamReport` of payload stream ranges: missing, duplicated,
reordered, corrupted.  The report is a function of the concatenated
received bytes only, never of how they were split into chunks, so that the
two directions of an echo, which arrive in different chunks, report the
same fault the same way (see :meth:`StreamReport.minus`).

How much intact data resynchronisation needs (``BLOCK_BYTES`` is 256):

- Every run of intact stream bytes between two faults, and each half of a
  swapped pair, must be at least :data:`RESYNC_BYTES` long (271) to be
  located for sure; a shorter one may hold no verifiable header, and then
  counts as garbage.
  The run at the very start needs no header (it is matched from offset 0),
  and a run that ends the stream needs only :data:`VERIFY_BYTES` (16).
- A drop, a duplicate, inserted junk, or an in-place corruption in which
  every byte differs may be as short as 1 byte.
- At a boundary between two located runs, a byte that fits both runs
  cannot be told apart from the data: the checker gives it to the earlier
  run (it extends the run it is in as far as the bytes match).  With
  random payload bytes that happens at one boundary in 256; the reported
  range then starts that many bytes later, with the same length for a
  drop or duplicate.

This module uses only the standard library.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, NamedTuple

from racelab.payload import BLOCK_BYTES, HEADER_BYTES, Payload
from racelab.ranges import (
    Range,
    coalesce,
    complement,
    subtract,
    total,
    union,
)

__all__ = [
    "RESYNC_BYTES",
    "VERIFY_BYTES",
    "Range",
    "Segment",
    "StreamChecker",
    "StreamReport",
    "subtract",
    "total",
    "union",
]

#: Bytes that must match the payload from the start of a candidate header
#: before the checker believes it (unless the stream ends sooner): the
#: 8-byte header and 8 bytes of filler after it.
VERIFY_BYTES = 16

#: An intact run of this many received bytes always holds a whole header
#: followed by enough bytes to verify it, so the checker always locates it.
RESYNC_BYTES = BLOCK_BYTES - 1 + VERIFY_BYTES

# While resynchronising, bytes this far before the first position that may
# still start a header can no longer be part of a located run: a run
# reaching further back would hold an earlier header that would already
# have been found.  They are counted as garbage and dropped from the buffer.
_KEEP_BYTES = BLOCK_BYTES


class Segment(NamedTuple):
    """One stretch of received bytes: a located run or garbage."""

    recv_offset: int
    """Position of the first byte among all bytes received, from 0."""
    length: int
    """Number of bytes received."""
    offset: int
    """Payload stream offset of the first byte, or -1 for garbage."""

    @property
    def end(self) -> int:
        """Stream offset just past a located run."""
        return self.offset + self.length


@dataclass(frozen=True)
class StreamReport:
    """What one direction delivered, compared with the payload.

    Every range is in payload stream offsets, and every tuple is a range
    set: sorted, with overlapping or touching ranges merged.  The report
    comes from the received bytes cut into located runs and garbage (see
    :class:`Segment`), taken in order of arrival.
    """

    expected_bytes: int
    """Length of the payload stream."""
    received_bytes: int
    """Bytes delivered, whatever they were."""
    missing: tuple[Range, ...] = ()
    """Offsets never received intact and not corrupted: holes below the
    highest offset received, and the tail not yet received.  A trial that
    ended normally lost them; one that timed out had not got them yet."""
    duplicated: tuple[Range, ...] = ()
    """Offsets received intact again after they had been received intact;
    the first receipt is not counted here."""
    reordered: tuple[Range, ...] = ()
    """Offsets whose first intact receipt came after a byte of a higher
    offset had been received: a hole filled late.  They are not missing."""
    corrupted: tuple[Range, ...] = ()
    """Offsets where garbage of exactly the right length arrived in their
    place: between the run that ends just before them (or the stream
    start) and the run that starts just after them (or the stream end).
    They are not also missing."""
    garbage_bytes: int = 0
    """Received bytes that located nowhere and are not a corruption in
    place: inserted junk, or stream runs too short to be located (see
    :data:`RESYNC_BYTES`)."""

    @property
    def complete(self) -> bool:
        """Whether every byte arrived once, in order, intact, with no
        garbage."""
        return not (
            self.missing
            or self.duplicated
            or self.reordered
            or self.corrupted
            or self.garbage_bytes
        )

    def minus(self, other: StreamReport) -> StreamReport:
        """What went wrong here that had not already gone wrong in *other*.

        The echo direction of a trial carries the server's faults along: a
        range the server never got is never echoed.  ``down.minus(up)``
        keeps only what the way back added, category by category.

        Args:
          other: a report on the same payload.

        Returns:
          A report with each range set reduced by *other*'s, garbage bytes
          reduced by *other*'s (not below 0), and this report's byte
          counts.

        Raises:
          ValueError: if the two reports are on streams of different
            lengths.
        """
        if other.expected_bytes != self.expected_bytes:
            raise ValueError(
                f"other.expected_bytes must be {self.expected_bytes} "
                f"(got {other.expected_bytes})"
            )
        return StreamReport(
            expected_bytes=self.expected_bytes,
            received_bytes=self.received_bytes,
            missing=subtract(self.missing, other.missing),
            duplicated=subtract(self.duplicated, other.duplicated),
            reordered=subtract(self.reordered, other.reordered),
            corrupted=subtract(self.corrupted, other.corrupted),
            garbage_bytes=max(0, self.garbage_bytes - other.garbage_bytes),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values; ranges as
        ``[offset, length]`` pairs."""
        out: dict[str, Any] = {
            "expected_bytes": self.expected_bytes,
            "received_bytes": self.received_bytes,
        }
        for name in ("missing", "duplicated", "reordered", "corrupted"):
            out[name] = [[r.offset, r.length] for r in getattr(self, name)]
        out["garbage_bytes"] = self.garbage_bytes
        return out


class StreamChecker:
    """Checks one direction's received bytes against *payload*.

    Call :meth:`feed` from ``data_received()`` and :meth:`report` whenever
    a verdict is needed, as often as wanted.

    Args:
      payload: the stream that was sent.
    """

    # States: IN_STEP (self._lost is None: the bytes so far end with a
    # located run that the next byte may continue) -> LOST (unexplained
    # bytes are buffered in self._lost) -> IN_STEP, when a located run
    # reaches the end of the buffered bytes.

    def __init__(self, payload: Payload) -> None:
        self.payload = payload
        self._data = payload.data
        self._size = payload.size
        self._segments: list[Segment] = []
        # IN_STEP state: the open run started at receive position
        # _run_recv, stream offset _run_offset; _expect is the stream
        # offset of the next byte it expects.  Bytes received so far are
        # _run_recv + (_expect - _run_offset); keeping no separate count
        # leaves the hot path one attribute update.
        self._run_recv = 0
        self._run_offset = 0
        self._expect = 0
        self._lost: _Lost | None = None

    def __repr__(self) -> str:
        state = "in step" if self._lost is None else "resynchronising"
        return (
            f"<StreamChecker {state} received={self.received_bytes} "
            f"of {self._size}>"
        )

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Check the next chunk of received bytes.

        Args:
          data: the bytes, as delivered (any bytes-like object of bytes).
        """
        # Hot path: one memcmp against the payload, no copy.
        if self._lost is None and self._data.startswith(data, self._expect):
            self._expect += len(data)
            return
        self._feed_slow(data)

    @property
    def cursor(self) -> int:
        """Stream offset of the next byte if it continues the last located
        run; -1 while resynchronising."""
        return self._expect if self._lost is None else -1

    @property
    def received_bytes(self) -> int:
        """Bytes fed so far."""
        if self._lost is None:
            return self._run_recv + self._expect - self._run_offset
        return self._lost.recv_offset + len(self._lost.buf)

    def offset_at(self, recv_offset: int) -> int:
        """Stream offset of the byte received at position *recv_offset*
        (counting every byte fed, from 0), or -1 if it is garbage or not
        located yet."""
        if self._lost is None and recv_offset >= self._run_recv:
            return self._run_offset + recv_offset - self._run_recv
        for segment in reversed(self._segments):
            if segment.recv_offset <= recv_offset:
                if recv_offset >= segment.recv_offset + segment.length:
                    return -1
                if segment.offset < 0:
                    return -1
                return segment.offset + recv_offset - segment.recv_offset
        return -1

    def locate(self, data: bytes | bytearray | memoryview) -> int | None:
        """Stream offset at which *data* starts; see
        :meth:`racelab.payload.Payload.locate`."""
        return self.payload.locate(data)

    def segments(self) -> tuple[Segment, ...]:
        """Located runs and garbage so far, in order of arrival.

        Bytes still being resynchronised are resolved as if no more bytes
        will come, without changing what later feeds see.
        """
        segments = list(self._segments)
        if self._lost is None:
            if self._expect > self._run_offset:
                segments.append(self._open_run())
        else:
            lost = self._lost.copy()
            run = lost.resolve(self.payload, segments, final=True)
            if run is None:
                lost.finish(self.payload, segments)
            else:
                segments.append(run)
        return tuple(segments)

    def report(self) -> StreamReport:
        """Compare what arrived so far with the payload.

        Callable at any moment (on a timeout, say); later feeds go on as if
        it had not been called.  Bytes not yet received count as missing.

        Returns:
          The report; see :class:`StreamReport` for each category.
        """
        return _summarise(self.segments(), self._size, self.received_bytes)

    def _open_run(self) -> Segment:
        return Segment(
            self._run_recv, self._expect - self._run_offset, self._run_offset
        )

    def _feed_slow(self, data: bytes | bytearray | memoryview) -> None:
        lost = self._lost
        if lost is None:
            # The open run ends where the bytes stop matching.
            with memoryview(data) as view:
                limit = min(len(view), self._size - self._expect)
                k = _match_forward(view, 0, self._data, self._expect, limit)
                self._expect += k
                if self._expect > self._run_offset:
                    self._segments.append(self._open_run())
                recv = self._run_recv + self._expect - self._run_offset
                lost = self._lost = _Lost(recv, bytearray(view[k:]))
        else:
            lost.buf += data

        run = lost.resolve(self.payload, self._segments, final=False)
        if run is not None:
            # A located run reaches the end of the bytes: back in step.
            self._lost = None
            self._run_recv, _, self._run_offset = run
            self._expect = run.end


class _Lost:
    # The LOST state: received bytes not yet explained, in buf, the first
    # at receive position recv_offset; the `garbage` bytes received just
    # before them are already known to locate nowhere.
    # Invariant: no position of buf before scan_from starts a header that
    # verifies.

    __slots__ = ("buf", "garbage", "held", "recv_offset", "scan_from")

    def __init__(self, recv_offset: int, buf: bytearray) -> None:
        self.recv_offset = recv_offset
        self.buf = buf
        self.garbage = 0
        # The garbage bytes themselves, while fewer than RESYNC_BYTES;
        # None once there were more.
        self.held: bytearray | None = bytearray()
        self.scan_from = 0

    def copy(self) -> _Lost:
        other = _Lost(self.recv_offset, bytearray(self.buf))
        other.garbage = self.garbage
        other.held = None if self.held is None else bytearray(self.held)
        other.scan_from = self.scan_from
        return other

    def resolve(
        self, payload: Payload, out: list[Segment], final: bool
    ) -> Segment | None:
        # Append to `out` the garbage and located runs that the bytes in buf
        # settle, and drop them from buf.  Returns the run that reaches the
        # end of buf (the caller goes back in step), or None when buf ends
        # in bytes that more data may yet explain.  With `final`, a
        # candidate that matches up to the end of buf is believed even if
        # shorter than VERIFY_BYTES.
        data, size, buf = payload.data, payload.size, self.buf
        while True:
            found = payload.find_header(buf, self.scan_from)
            if found is None:
                self.scan_from = max(
                    self.scan_from, len(buf) - HEADER_BYTES + 1
                )
                self._certify(self.scan_from - _KEEP_BYTES)
                return None
            pos, offset = found

            # A view of buf must be released before buf is resized.
            with memoryview(buf) as view:
                limit = min(len(buf) - pos, size - offset)
                ahead = _match_forward(view, pos, data, offset, limit)
                to_end = ahead == len(buf) - pos
                if (
                    ahead >= VERIFY_BYTES
                    or ahead == size - offset
                    or (final and to_end)
                ):
                    back = min(pos, offset)
                    back = _match_backward(view, pos, data, offset, back)
                else:
                    back = -1
            if back < 0:
                if not to_end:
                    # Mismatch right after the header: not a run.
                    self.scan_from = pos + 1
                    continue
                # Matches as far as the bytes go: wait for more.
                self.scan_from = pos
                self._certify(pos - _KEEP_BYTES)
                return None

            start = pos - back
            self._settle_garbage(start, out, payload)
            run = Segment(self.recv_offset, back + ahead, offset - back)
            consumed = back + ahead
            if consumed == len(buf):
                return run
            out.append(run)
            del buf[:consumed]
            self.recv_offset += consumed
            self.scan_from = 0

    def finish(self, payload: Payload, out: list[Segment]) -> None:
        # No more bytes will come: the tail of buf may still be the end of
        # the stream, short of a whole header (a drop just before the end).
        # Whatever else is left is garbage.
        data, buf = payload.data, self.buf
        with memoryview(buf) as view:
            limit = min(len(buf), payload.size)
            tail = _match_backward(view, len(buf), data, payload.size, limit)
        if tail < VERIFY_BYTES:
            tail = 0
        self._settle_garbage(len(buf) - tail, out, payload)
        if tail:
            out.append(Segment(self.recv_offset, tail, payload.size - tail))

    def _settle_garbage(
        self, count: int, out: list[Segment], payload: Payload
    ) -> None:
        # The first `count` bytes of buf, and the garbage before them, are
        # garbage up to the next located run (or the end) -- unless they
        # are a short run of the stream, too short to hold a header, that
        # sits between two jumps (a read kept between two lost ones).  Such
        # a run is searched for in the whole stream and believed only if it
        # occurs there exactly once (Payload.locate).  The bytes are kept
        # (in `held`) while they are few enough to be such a run, so the
        # outcome does not depend on how the stream was cut into chunks.
        self._certify(count)
        if self.garbage:
            start = self.recv_offset - self.garbage
            held = self.held
            offset = None
            if held is not None and VERIFY_BYTES <= len(held):
                offset = payload.locate(bytes(held))
            out.append(Segment(start, self.garbage, -1 if offset is None
                               else offset))
            self.garbage = 0
        self.held = bytearray()

    def _certify(self, count: int) -> None:
        # The first `count` bytes of buf locate nowhere: count them and let
        # them go, so that a long stretch of garbage costs bounded memory.
        if count <= 0:
            return
        held = self.held
        if held is not None:
            if len(held) + count < RESYNC_BYTES:
                held += self.buf[:count]
            else:
                self.held = None  # too long to be a run without a header
        del self.buf[:count]
        self.recv_offset += count
        self.garbage += count
        self.scan_from = max(0, self.scan_from - count)


def _match_forward(
    view: memoryview, pos: int, data: bytes, offset: int, limit: int
) -> int:
    # Largest k <= limit with view[pos:pos + k] == data[offset:offset + k].
    # Each probe compares only bytes not yet known to match, so the search
    # costs O(limit) memcmp plus O(log limit) calls.
    if data.startswith(view[pos : pos + limit], offset):
        return limit
    lo, hi = 0, limit  # Invariant: lo bytes match, hi bytes do not.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if data.startswith(view[pos + lo : pos + mid], offset + lo):
            lo = mid
        else:
            hi = mid
    return lo


def _match_backward(
    view: memoryview, pos: int, data: bytes, offset: int, limit: int
) -> int:
    # Largest k <= limit with view[pos - k:pos] == data[offset - k:offset].
    if data.startswith(view[pos - limit : pos], offset - limit):
        return limit
    lo, hi = 0, limit  # Invariant: lo bytes match, hi bytes do not.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if data.startswith(view[pos - mid : pos - lo], offset - mid):
            lo = mid
        else:
            hi = mid
    return lo


class _Coverage:
    # The stream offsets received intact so far, as sorted disjoint
    # half-open intervals in two parallel lists.

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> tuple[list[Range], list[Range]]:
        # Add [start, end); return (the parts already covered, the parts
        # that are new).
        starts, ends = self.starts, self.ends
        lo = bisect.bisect_left(ends, start)  # first that ends at/after
        hi = bisect.bisect_right(starts, end)  # past the last touching
        seen: list[Range] = []
        new: list[Range] = []
        cursor = start
        for s, e in zip(starts[lo:hi], ends[lo:hi], strict=True):
            if s > cursor:
                new.append(Range(cursor, min(s, end) - cursor))
            a, b = max(s, start), min(e, end)
            if a < b:
                seen.append(Range(a, b - a))
            cursor = max(cursor, e)
        if cursor < end:
            new.append(Range(cursor, end - cursor))

        if lo < hi:
            start, end = min(start, starts[lo]), max(end, ends[hi - 1])
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]
        return seen, new


def _summarise(
    segments: tuple[Segment, ...], size: int, received: int
) -> StreamReport:
    coverage = _Coverage()
    duplicated: list[Range] = []
    reordered: list[Range] = []
    corrupted: list[Range] = []
    garbage = 0
    highest = 0  # stream offset past the highest byte received so far
    previous_end = 0  # stream offset past the last located run

    for i, seg in enumerate(segments):
        if seg.offset < 0:
            # Garbage segments never touch each other, so the next segment,
            # if any, is a located run.
            following = (
                segments[i + 1].offset if i + 1 < len(segments) else size
            )
            if following - previous_end == seg.length:
                corrupted.append(Range(previous_end, seg.length))
            else:
                garbage += seg.length
            continue

        seen, new = coverage.add(seg.offset, seg.end)
        duplicated += seen
        for r in new:
            if r.offset < highest:
                reordered.append(
                    Range(r.offset, min(r.end, highest) - r.offset)
                )
        highest = max(highest, seg.end)
        previous_end = seg.end

    pairs = zip(coverage.starts, coverage.ends, strict=True)
    intact = [Range(s, e - s) for s, e in pairs]
    corrupted_set = coalesce(corrupted)
    return StreamReport(
        expected_bytes=size,
        received_bytes=received,
        missing=complement(union(intact, corrupted_set), size),
        duplicated=coalesce(duplicated),
        reordered=coalesce(reordered),
        corrupted=corrupted_set,
        garbage_bytes=garbage,
    )
