"""Byte ranges of the payload stream and set arithmetic on them.

A :class:`Range` is a half-open interval ``[offset, offset + length)`` of
payload stream offsets.  A *range set* is a tuple of ranges that is sorted,
has no empty range, and has no two ranges that overlap or touch; every
function here returns one, so that two range sets describing the same bytes
compare equal.  Inputs may be any iterable of ranges, in any order.

This module uses only the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "Range",
    "coalesce",
    "complement",
    "intersect",
    "subtract",
    "total",
    "union",
]


class Range(NamedTuple):
    """Half-open interval of payload stream offsets.

    Ranges sort by offset, then length, as tuples do.
    """

    offset: int
    """Stream offset of the first byte."""
    length: int
    """Number of bytes, > 0 in a range set."""

    @property
    def end(self) -> int:
        """Stream offset just past the last byte."""
        return self.offset + self.length


def coalesce(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort *ranges*, drop empty ones, and merge those that overlap or touch.

    Args:
      ranges: any ranges, in any order.

    Returns:
      The range set covering exactly the same offsets.
    """
    merged: list[Range] = []
    for offset, length in sorted(ranges):
        if length <= 0:
            continue
        if merged and offset <= merged[-1].end:
            last = merged[-1]
            end = max(last.end, offset + length)
            merged[-1] = Range(last.offset, end - last.offset)
        else:
            merged.append(Range(offset, length))
    return tuple(merged)


def union(*range_sets: Iterable[Range]) -> tuple[Range, ...]:
    """Offsets in any of *range_sets*, as a range set."""
    return coalesce(r for ranges in range_sets for r in ranges)


def subtract(
    ranges: Iterable[Range], other: Iterable[Range]
) -> tuple[Range, ...]:
    """Offsets in *ranges* that are not in *other*.

    Args:
      ranges: the offsets to keep from.
      other: the offsets to remove.

    Returns:
      The difference, as a range set.
    """
    result: list[Range] = []
    cuts = coalesce(other)
    j = 0
    for r in coalesce(ranges):
        start, end = r.offset, r.end
        # Cuts that end before this range cannot touch later ranges either,
        # since both sets are sorted and disjoint.
        while j < len(cuts) and cuts[j].end <= start:
            j += 1
        k = j
        while k < len(cuts) and cuts[k].offset < end:
            if cuts[k].offset > start:
                result.append(Range(start, cuts[k].offset - start))
            start = max(start, cuts[k].end)
            k += 1
        if start < end:
            result.append(Range(start, end - start))
    return tuple(result)


def intersect(
    ranges: Iterable[Range], other: Iterable[Range]
) -> tuple[Range, ...]:
    """Offsets in both *ranges* and *other*, as a range set."""
    a = coalesce(ranges)
    return subtract(a, subtract(a, other))


def complement(ranges: Iterable[Range], size: int) -> tuple[Range, ...]:
    """Offsets in ``[0, size)`` that are not in *ranges*, as a range set."""
    return subtract((Range(0, size),), ranges)


def total(ranges: Iterable[Range]) -> int:
    """Number of distinct offsets in *ranges* (overlaps count once)."""
    return sum(r.length for r in coalesce(ranges))
