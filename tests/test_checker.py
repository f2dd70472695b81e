"""Tests for racelab.checker and racelab.ranges: faults reported exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from racelab.checker import (
    RESYNC_BYTES,
    VERIFY_BYTES,
    Segment,
    StreamChecker,
    StreamReport,
)
from racelab.payload import BLOCK_BYTES, Payload
from racelab.ranges import (
    Range,
    coalesce,
    complement,
    intersect,
    subtract,
    total,
    union,
)

CATEGORIES = ("missing", "duplicated", "reordered", "corrupted")
KINDS = ("drop", "duplicate", "swap", "corrupt", "insert")

# Largest intact stretch between faults: big enough that some streams reach
# a few hundred KiB, small enough to keep the file fast.
MAX_GAP = 40_000
MAX_FAULT = 4 * BLOCK_BYTES

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def feed_in_chunks(payload, received, rng, max_chunk=65536):
    """Feed *received* to a new checker in chunks of random sizes."""
    checker = StreamChecker(payload)
    view = memoryview(received)
    i = 0
    while i < len(received):
        # Mix tiny, medium and large chunks so that splits land inside
        # faults, headers and verification windows.
        n = rng.choice((rng.randint(1, 16), rng.randint(1, 2048)))
        n = rng.choice((n, rng.randint(1, max_chunk)))
        checker.feed(bytes(view[i : i + n]))
        i += n
    return checker


def feed_whole(payload, received):
    """Feed *received* to a new checker in one chunk."""
    checker = StreamChecker(payload)
    checker.feed(received)
    return checker


@dataclass
class Faulty:
    """A received stream built from the payload with known faults."""

    payload: Payload
    received: bytes
    expected: dict[str, list[Range]]
    garbage_bytes: int = 0
    pieces: list[tuple[str, int, int, bytes]] = field(default_factory=list)

    def ambiguous(self):
        """Whether a boundary byte fits both runs around it (see the
        checker's docstring), so that no checker could place it."""
        data, size = self.payload.data, self.payload.size
        # The checker starts in step at offset 0, as after an empty run.
        merged = [("s", 0, 0, b"")]
        for kind, start, end, blob in self.pieces:
            last = merged[-1]
            if kind == "s" == last[0] and last[2] == start:
                merged[-1] = ("s", last[1], end, b"")
                continue
            merged.append((kind, start, end, blob))
        for (k1, _, end1, blob1), (k2, start2, _, blob2) in pairwise(merged):
            if k1 == "s" and end1 < size:
                # Could the run before extend into what follows?
                first = data[start2] if k2 == "s" else blob2[0]
                if data[end1] == first:
                    return True
            # Could the run after extend back into the garbage?
            back = k1 == "g" and k2 == "s" and start2 > 0
            if back and blob1[-1] == data[start2 - 1]:
                return True
        return False


@st.composite
def faulty_streams(draw, max_faults=5):
    """Streams with drops, duplicates, swaps, in-place corruptions and
    inserted junk at positions that respect the checker's resync
    minimums."""
    plan = []
    pos = 0
    for i in range(draw(st.integers(0, max_faults))):
        kind = draw(st.sampled_from(KINDS))
        # The stream's first run is matched from offset 0 and needs no
        # header; every later intact run must hold one.
        gap = draw(st.integers(0 if i == 0 else RESYNC_BYTES, MAX_GAP))
        start = pos + gap
        if kind == "swap":
            first = draw(st.integers(RESYNC_BYTES, MAX_FAULT))
            second = draw(st.integers(RESYNC_BYTES, MAX_FAULT))
            plan.append((kind, start, start + first, start + first + second))
            pos = start + first + second
        else:
            length = draw(st.integers(1, MAX_FAULT))
            plan.append((kind, start, start + length, 0))
            # Inserted junk takes no stream offsets.
            pos = start if kind == "insert" else start + length

    ending = draw(st.sampled_from(("intact", "truncated", "fault")))
    if ending == "fault" and plan and plan[-1][0] in ("drop", "corrupt"):
        size = pos  # the last fault ends the stream
    else:
        gap = draw(st.integers(RESYNC_BYTES if plan else 1, MAX_GAP))
        size = pos + gap
        if ending == "truncated":
            cut = draw(st.integers(1, MAX_FAULT))
            plan.append(("drop", size, size + cut, 0))
            size += cut

    payload = Payload(draw(st.integers(0, 2**32)), size)
    masks = random.Random(draw(st.integers(0, 2**32)))
    return build(payload, plan, masks)


def build(payload, plan, masks):
    """Apply *plan*'s faults to the payload, in order."""
    data = payload.data
    out = bytearray()
    expected = {name: [] for name in CATEGORIES}
    pieces = []

    def take(kind, start, end, blob=None):
        out.extend(data[start:end] if blob is None else blob)
        pieces.append((kind, start, end, blob))

    pos = garbage = 0
    for kind, a, b, c in plan:
        take("s", pos, a)
        if kind == "drop":
            expected["missing"].append(Range(a, b - a))
        elif kind == "duplicate":
            take("s", a, b)
            take("s", a, b)
            expected["duplicated"].append(Range(a, b - a))
        elif kind == "swap":
            take("s", b, c)
            take("s", a, b)
            expected["reordered"].append(Range(a, b - a))
            b = c
        elif kind == "corrupt":  # every byte really differs
            blob = bytes(x ^ masks.randint(1, 255) for x in data[a:b])
            take("g", a, b, blob)
            expected["corrupted"].append(Range(a, b - a))
        else:  # insert: junk between two stream bytes, nothing lost
            take("g", a, a, masks.randbytes(b - a))
            garbage += b - a
            b = a
        pos = b
    take("s", pos, payload.size)
    pieces = [p for p in pieces if p[1] < p[2] or p[3]]
    return Faulty(payload, bytes(out), expected, garbage, pieces)


@SETTINGS
@given(stream=faulty_streams(), chunking=st.randoms(use_true_random=False))
def test_checker_reports_exactly_the_injected_faults(stream, chunking):
    """Each category holds exactly the injected ranges, however the bytes
    are chunked."""
    assume(not stream.ambiguous())

    report = feed_in_chunks(stream.payload, stream.received, chunking).report()

    for name in CATEGORIES:
        assert getattr(report, name) == coalesce(stream.expected[name]), name
    assert report.garbage_bytes == stream.garbage_bytes
    assert report.received_bytes == len(stream.received)
    assert report.expected_bytes == stream.payload.size
    faulty = any(stream.expected.values()) or stream.garbage_bytes
    assert report.complete == (not faulty)


@st.composite
def mangled_streams(draw):
    """Payload runs in any order, with random junk, no minimums kept."""
    payload = Payload(
        draw(st.integers(0, 2**32)), draw(st.integers(1, 30_000))
    )
    pieces = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            start = draw(st.integers(0, payload.size - 1))
            length = draw(st.integers(1, 3000))
            pieces.append(payload.data[start : start + length])
        else:
            pieces.append(draw(st.binary(min_size=1, max_size=600)))
    return payload, b"".join(pieces)


@SETTINGS
@given(stream=mangled_streams(), chunking=st.randoms(use_true_random=False))
def test_checker_report_ignores_chunking(stream, chunking):
    """Segments and report depend on the received bytes, not on how they
    were split, so both directions of an echo report alike."""
    payload, received = stream

    whole = feed_whole(payload, received)
    chunked = feed_in_chunks(payload, received, chunking, max_chunk=700)

    assert chunked.segments() == whole.segments()
    assert chunked.report() == whole.report()


@SETTINGS
@given(stream=mangled_streams())
def test_checker_segments_account_for_every_byte(stream):
    """Segments tile the received bytes, and located runs are payload."""
    payload, received = stream

    segments = feed_whole(payload, received).segments()

    position = 0
    for seg in segments:
        assert seg.recv_offset == position
        assert seg.length > 0
        if seg.offset >= 0:
            chunk = received[position : position + seg.length]
            assert payload.data[seg.offset : seg.end] == chunk
        position += seg.length
    assert position == len(received)


def test_checker_clean_stream_is_complete():
    """An intact stream, fed packet by packet, is complete."""
    payload = Payload(1, 200 * 1024)
    checker = StreamChecker(payload)

    for i in range(200):
        checker.feed(payload.packet(i, 1024))
    report = checker.report()

    assert report.complete
    assert report == StreamReport(payload.size, payload.size)
    assert checker.segments() == (Segment(0, payload.size, 0),)


def test_checker_truncated_stream_misses_the_tail():
    """A stream that stops early misses everything after the stop."""
    payload = Payload(2, 100_000)

    report = feed_whole(payload, payload.data[:60_000]).report()

    assert report.missing == (Range(60_000, 40_000),)
    assert not report.complete


def test_checker_drop_at_start():
    """Bytes lost before the first byte received are missing."""
    payload = Payload(2, 100_000)

    report = feed_whole(payload, payload.data[700:]).report()

    assert report.missing == (Range(0, 700),)
    assert report.reordered == ()


def test_checker_drop_leaving_a_short_tail():
    """After a drop, a tail too short to hold a header still locates."""
    payload = Payload(2, 100 * BLOCK_BYTES + 40)
    received = payload.data[:5000] + payload.data[-30:]

    checker = feed_whole(payload, received)

    assert checker.report().missing == (Range(5000, payload.size - 5030),)
    assert checker.segments()[-1] == Segment(5000, 30, payload.size - 30)


def test_checker_report_midway_names_the_tail_missing():
    """report() on a timeout names the bytes not yet received missing,
    and later feeds go on as if it had not been called."""
    payload = Payload(3, 100_000)
    checker = StreamChecker(payload)
    checker.feed(payload.data[:40_000])

    midway = checker.report()
    checker.feed(payload.data[40_000:])

    assert midway.missing == (Range(40_000, 60_000),)
    assert midway.received_bytes == 40_000
    assert checker.report().complete


def test_checker_report_while_resynchronising_changes_nothing():
    """report() in the middle of a resync leaves later results intact."""
    payload = Payload(3, 100_000)
    received = payload.data[:5000] + payload.data[9000:]
    checker = StreamChecker(payload)
    checker.feed(received[:5010])  # 10 bytes after the drop, no header

    midway = checker.report()
    checker.feed(received[5010:])

    assert midway.missing == (Range(5000, 95_000),)
    assert midway.garbage_bytes == 10
    assert checker.report() == feed_whole(payload, received).report()


def test_checker_junk_counts_as_garbage():
    """Inserted junk is garbage, not corruption, and nothing is missing."""
    payload = Payload(4, 50_000)
    junk = b"\xff" * 333
    received = payload.data[:10_000] + junk + payload.data[10_000:]

    report = feed_whole(payload, received).report()

    assert report == StreamReport(50_000, 50_333, garbage_bytes=333)
    assert not report.complete


def test_checker_bytes_after_the_end_are_garbage_or_duplicates():
    """Bytes past the end of the stream are not taken for stream bytes."""
    payload = Payload(4, 50_000)

    extra = feed_whole(payload, payload.data + b"x" * 100).report()
    again = feed_whole(payload, payload.data + payload.data[-5000:]).report()

    assert extra.garbage_bytes == 100
    assert again.duplicated == (Range(45_000, 5000),)


def test_checker_corrupted_tail():
    """Garbage that exactly fills the end of the stream is corruption."""
    payload = Payload(4, 50_000)
    tail = bytes(b ^ 0x5A for b in payload.data[49_000:])

    report = feed_whole(payload, payload.data[:49_000] + tail).report()

    assert report.corrupted == (Range(49_000, 1000),)
    assert report.missing == ()


def test_checker_reordered_run_is_not_missing():
    """A run that fills a hole late is reordered, not missing."""
    payload = Payload(5, 50_000)
    d = payload.data
    received = d[:10_000] + d[12_000:20_000] + d[10_000:12_000] + d[20_000:]

    report = feed_whole(payload, received).report()

    assert report.reordered == (Range(10_000, 2000),)
    assert report.missing == report.duplicated == ()


@pytest.mark.parametrize("length", [VERIFY_BYTES, 53, RESYNC_BYTES - 1,
                                    RESYNC_BYTES])
def test_checker_short_run_between_jumps_is_located(length):
    """A run too short to hold a verified header, kept between two gaps
    (one read delivered between two lost ones), is found by searching the
    whole stream, so the gaps around it are exact."""
    payload = Payload(6, 50_000)
    d = payload.data
    start = 40 * BLOCK_BYTES + 1  # just after a header: worst case
    middle = d[start : start + length]

    report = feed_whole(payload, d[:5000] + middle + d[20_000:]).report()

    assert report.garbage_bytes == 0
    assert report.missing == (
        Range(5000, start - 5000),
        Range(start + length, 20_000 - start - length),
    )


def test_checker_run_shorter_than_verify_bytes_is_garbage():
    """Below VERIFY_BYTES a run is not trusted to be the stream's: such
    a run between two gaps counts as garbage."""
    payload = Payload(6, 50_000)
    d = payload.data
    start = 40 * BLOCK_BYTES + 1
    middle = d[start : start + VERIFY_BYTES - 1]

    report = feed_whole(payload, d[:5000] + middle + d[20_000:]).report()

    assert report.garbage_bytes == VERIFY_BYTES - 1


@pytest.mark.parametrize("length", [RESYNC_BYTES - 1, RESYNC_BYTES])
@pytest.mark.parametrize("split", range(VERIFY_BYTES + 1))
def test_checker_run_verified_across_chunks(split, length):
    """A run with one header is located alike whether or not its
    verification window is split between two chunks."""
    payload = Payload(6, 50_000)
    d = payload.data
    start = 40 * BLOCK_BYTES + 1  # one header, 255 bytes in
    received = d[:5000] + d[start : start + length] + d[20_000:]
    cut = 5000 + BLOCK_BYTES - 1 + split
    checker = StreamChecker(payload)

    checker.feed(received[:cut])
    checker.feed(received[cut:])
    report = checker.report()

    assert report == feed_whole(payload, received).report()
    assert report.garbage_bytes == 0


def test_checker_ambiguous_boundary_goes_to_the_earlier_run():
    """A byte that fits both sides of a drop is given to the run before
    it, as documented: the hole shifts by one byte, its length holds."""
    payload = Payload(7, 50_000)
    d = payload.data
    a = 5000
    b = next(
        x
        for x in range(9001, 20_000)
        if d[x] == d[a] and d[x + 1] != d[a + 1] and x % BLOCK_BYTES > 16
    )

    report = feed_whole(payload, d[:a] + d[b:]).report()

    assert report.missing == (Range(a + 1, b - a),)


def test_checker_cursor_follows_the_stream():
    """cursor is the next expected offset, and -1 while resynchronising."""
    payload = Payload(8, 50_000)
    checker = StreamChecker(payload)

    cursors = []
    for start, end in ((0, 1000), (5000, 5005), (5005, 6000)):
        checker.feed(payload.data[start:end])
        cursors.append(checker.cursor)

    assert cursors == [1000, -1, 6000]


def test_checker_locate_delegates_to_payload():
    """locate() finds the stream offset of bytes from anywhere."""
    payload = Payload(8, 50_000)

    assert StreamChecker(payload).locate(payload.data[777:3000]) == 777


def test_checker_verify_bytes_cover_the_header():
    """The verification window is longer than a header."""
    assert VERIFY_BYTES > 8
    assert RESYNC_BYTES == BLOCK_BYTES - 1 + VERIFY_BYTES


def test_report_minus_removes_what_the_other_had():
    """minus() keeps, per category, only what the other report lacks."""
    down = StreamReport(
        1000,
        900,
        missing=(Range(0, 100), Range(500, 100)),
        duplicated=(Range(700, 50),),
        reordered=(Range(800, 10),),
        corrupted=(Range(900, 20),),
        garbage_bytes=30,
    )
    up = StreamReport(
        1000,
        950,
        missing=(Range(0, 100), Range(550, 10)),
        corrupted=(Range(900, 20),),
        garbage_bytes=40,
    )

    echo = down.minus(up)

    assert echo == StreamReport(
        1000,
        900,
        missing=(Range(500, 50), Range(560, 40)),
        duplicated=(Range(700, 50),),
        reordered=(Range(800, 10),),
        garbage_bytes=0,
    )
    assert down.minus(down).complete


def test_report_minus_of_echoed_faults_is_complete():
    """Faults on the way up, echoed unchanged, add nothing on the way
    down, even with different chunking."""
    payload = Payload(9, 80_000)
    d = payload.data
    received = d[:10_000] + d[11_000:40_000] + d[30_000:]

    up = feed_in_chunks(payload, received, random.Random(1)).report()
    down = feed_in_chunks(payload, received, random.Random(2)).report()

    assert not up.complete
    assert down.minus(up).complete


def test_report_minus_rejects_other_stream_length():
    """minus() refuses a report on a stream of another length."""
    with pytest.raises(ValueError) as info:
        StreamReport(1000, 0).minus(StreamReport(999, 0))

    assert str(info.value) == "other.expected_bytes must be 1000 (got 999)"


def test_report_to_dict():
    """to_dict() gives plain values, ranges as [offset, length]."""
    report = StreamReport(10, 8, missing=(Range(2, 2),), garbage_bytes=1)

    assert report.to_dict() == {
        "expected_bytes": 10,
        "received_bytes": 8,
        "missing": [[2, 2]],
        "duplicated": [],
        "reordered": [],
        "corrupted": [],
        "garbage_bytes": 1,
    }


# Range sets, checked against Python sets of offsets.

small_ranges = st.lists(
    st.builds(Range, st.integers(0, 60), st.integers(0, 12)), max_size=6
)


def offsets(ranges):
    """The set of offsets that *ranges* cover."""
    return {x for r in ranges for x in range(r.offset, r.end)}


def is_range_set(ranges):
    """Sorted, non-empty, neither overlapping nor touching."""
    return all(r.length > 0 for r in ranges) and all(
        a.end < b.offset for a, b in pairwise(ranges)
    )


@settings(max_examples=300, deadline=None)
@given(a=small_ranges, b=small_ranges)
def test_ranges_match_set_arithmetic(a, b):
    """coalesce, union, subtract, intersect, complement and total agree
    with sets of offsets and return range sets."""
    results = {
        "coalesce": (coalesce(a), offsets(a)),
        "union": (union(a, b), offsets(a) | offsets(b)),
        "subtract": (subtract(a, b), offsets(a) - offsets(b)),
        "intersect": (intersect(a, b), offsets(a) & offsets(b)),
        "complement": (complement(a, 50), set(range(50)) - offsets(a)),
    }

    for name, (got, want) in results.items():
        assert offsets(got) == want, name
        assert is_range_set(got), name
    assert total(a) == len(offsets(a))


def test_ranges_coalesce_merges_touching():
    """Adjacent ranges merge into one."""
    assert coalesce([Range(10, 5), Range(0, 10), Range(20, 0)]) == (
        Range(0, 15),
    )
