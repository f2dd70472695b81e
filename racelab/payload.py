"""The payload: deterministic, self-locating bytes that a trial sends.

The client sends ``Payload(seed, size).data`` and the server echoes it back
unchanged, so both directions carry the same stream offsets.  Any run of
received bytes long enough to hold one header can be placed in the stream
from the bytes alone, which is what lets the checker say which bytes were
lost, repeated or reordered.

Layout: the stream is cut into blocks of :data:`BLOCK_BYTES`.  Each block
starts with a header of :data:`HEADER_BYTES`:

- bytes 0-3: a tag derived from the seed, the same in every block;
- bytes 4-7: the block index, little-endian, XORed with a key derived
  from the seed.

Every other byte is filler: SHAKE-128 output, one call per MiB, keyed by
the seed and the offset of that MiB (see :func:`_generate`).  SHAKE-128 is
a standard extendable-output function, so the same seed and size give the
same bytes on every Python version, operating system and hashlib backend;
the ``random`` module makes no such promise for ``randbytes``.  A payload of
the same seed and a smaller size is a prefix of a larger one.

Because the tag is one constant string, finding headers is one
``bytes.find`` in C; a header is never trusted alone: :meth:`Payload.locate`
checks every candidate against the stream.

This module uses only the standard library.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from array import array

from racelab.config import MAX_STREAM_BYTES

__all__ = ["BLOCK_BYTES", "HEADER_BYTES", "Payload"]

#: Bytes from one header to the next.  Smaller blocks resynchronise sooner
#: after a fault (see ``racelab.checker.RESYNC_BYTES``) and cost 8 bytes of
#: header per block: 3% at 256.
BLOCK_BYTES = 256

#: Bytes of each block's header: 4 of tag, 4 of mixed block index.
HEADER_BYTES = 8

_TAG_BYTES = 4

# Filler is generated this many bytes per SHAKE call, and headers are
# written into each chunk while it is small and in cache; the final join is
# the only full-size copy, so generation peaks at twice the payload's size.
# Part of the byte definition: changing it changes every payload.  Must be
# a multiple of BLOCK_BYTES.
_FILL_CHUNK_BYTES = 1 << 20

# An array typecode of exactly 4 bytes ("I" on every platform CPython
# supports, but the C standard only promises >= 2).
_U32 = next(code for code in "IL" if array(code).itemsize == 4)


class Payload:
    """The byte stream of one trial, with helpers to locate received bytes.

    Payloads are immutable and cheap to construct: the bytes of the last
    two ``(seed, size)`` pairs are cached, so the trials of a sweep that
    share a seed generate them once.

    Args:
      seed: any integer >= 0; different seeds give different filler and
        different headers.
      size: stream length in bytes, from 1 to
        :data:`racelab.config.MAX_STREAM_BYTES`.

    Raises:
      ValueError: if *seed* or *size* breaks its rule.
    """

    __slots__ = ("_headers", "_key", "_tag", "data", "seed", "size", "view")

    def __init__(self, seed: int, size: int) -> None:
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0 (got {seed!r})")
        if not _is_int(size) or not 1 <= size <= MAX_STREAM_BYTES:
            raise ValueError(
                f"size must be an integer from 1 to {MAX_STREAM_BYTES} "
                f"(got {size!r})"
            )
        self.seed = seed
        self.size = size
        self.data, self._tag, self._key = _generate(seed, size)
        self.view = memoryview(self.data)
        # Only whole headers can be decoded; a block that starts fewer
        # than HEADER_BYTES before the end has a truncated one.
        if size >= HEADER_BYTES:
            self._headers = (size - HEADER_BYTES) // BLOCK_BYTES + 1
        else:
            self._headers = 0

    def __repr__(self) -> str:
        return f"Payload(seed={self.seed}, size={self.size})"

    def __len__(self) -> int:
        return self.size

    def packet(self, index: int, packet_bytes: int) -> memoryview:
        """The bytes of packet *index* when the stream is cut every
        *packet_bytes*; the last packet may be shorter.

        Args:
          index: packet number, from 0.
          packet_bytes: bytes per packet, >= 1.

        Returns:
          A zero-copy view into :attr:`data`.

        Raises:
          ValueError: if *packet_bytes* < 1.
          IndexError: if the packet starts at or past the end.
        """
        if not _is_int(packet_bytes) or packet_bytes < 1:
            raise ValueError(
                f"packet_bytes must be an integer >= 1 (got {packet_bytes!r})"
            )
        last = (self.size - 1) // packet_bytes
        if not _is_int(index) or not 0 <= index <= last:
            raise IndexError(
                f"index must be an integer from 0 to {last} (got {index!r})"
            )
        start = index * packet_bytes
        return self.view[start : start + packet_bytes]

    def find_header(
        self, buf: bytes | bytearray, start: int = 0
    ) -> tuple[int, int] | None:
        """Find the first whole header of this payload in *buf*.

        Only the header's 8 bytes are checked; the caller must verify the
        bytes around it against :attr:`data` before believing it.

        Args:
          buf: received bytes.
          start: position in *buf* to search from.

        Returns:
          ``(position in buf, stream offset of that header)``, or None if no
          whole header starts at or after *start*.
        """
        tag, key, headers = self._tag, self._key, self._headers
        last = len(buf) - HEADER_BYTES
        pos = buf.find(tag, start)
        while 0 <= pos <= last:
            field = buf[pos + _TAG_BYTES : pos + HEADER_BYTES]
            index = int.from_bytes(field, "little") ^ key
            if index < headers:
                return pos, index * BLOCK_BYTES
            pos = buf.find(tag, pos + 1)
        return None

    def locate(self, chunk: bytes | bytearray | memoryview) -> int | None:
        """Stream offset at which *chunk* starts, if it is a run of the
        stream.

        A chunk of at least ``BLOCK_BYTES + HEADER_BYTES - 1`` bytes always
        holds a whole header, which gives a candidate offset in one
        ``bytes.find``.  A shorter chunk may hold none (say the last bytes
        of the stream); it is searched for in the whole stream and accepted
        only if it occurs exactly once, which costs a scan of :attr:`data`.

        Args:
          chunk: received bytes.

        Returns:
          The offset ``o`` with ``data[o:o + len(chunk)] == chunk``, or None
          if *chunk* is empty, is not a contiguous run of this payload, or
          (short chunks) occurs more than once.
        """
        if not isinstance(chunk, (bytes, bytearray)):
            chunk = bytes(chunk)
        n = len(chunk)
        if n == 0:
            return None

        found = self.find_header(chunk)
        while found is not None:
            pos, offset = found
            start = offset - pos
            if start >= 0 and self.data.startswith(chunk, start):
                return start
            found = self.find_header(chunk, pos + 1)
        if n >= BLOCK_BYTES + HEADER_BYTES - 1:
            # Long enough to hold a whole header, yet none verified: not a
            # contiguous run of this stream.
            return None

        first = self.data.find(chunk)
        if first < 0 or self.data.find(chunk, first + 1) >= 0:
            return None
        return first


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header_keys(seed: int) -> tuple[bytes, int]:
    # Tag and index key come from a hash of the seed, so that two seeds'
    # headers differ and one trial's bytes never locate in another's
    # payload.
    digest = hashlib.sha256(b"racelab payload header %d" % seed).digest()
    return digest[:_TAG_BYTES], int.from_bytes(digest[4:8], "little")


@functools.lru_cache(maxsize=2)
def _generate(seed: int, size: int) -> tuple[bytes, bytes, int]:
    # Returns (data, tag, key).  Bounded cache: a 32 MiB payload is
    # generated once per sweep point, and at most two are kept alive.
    tag, key = _header_keys(seed)

    # Headers are written lane by lane: lane j holds byte j of every
    # block's header, and one extended-slice assignment per filler chunk
    # writes it to chunk[j::BLOCK_BYTES].  No per-block Python work.
    blocks = -(-size // BLOCK_BYTES)
    indices = array(_U32, range(blocks))
    if sys.byteorder == "big":
        indices.byteswap()
    raw = indices.tobytes()
    key_bytes = key.to_bytes(4, "little")
    lanes = [bytes([t]) * blocks for t in tag]
    for j in range(4):
        xor = bytes(b ^ key_bytes[j] for b in range(256))
        lanes.append(raw[j::4].translate(xor))

    chunks = []
    for start in range(0, size, _FILL_CHUNK_BYTES):
        n = min(_FILL_CHUNK_BYTES, size - start)
        name = b"racelab payload filler %d %d" % (seed, start)
        chunk = bytearray(hashlib.shake_128(name).digest(n))
        first = start // BLOCK_BYTES
        for j, lane in enumerate(lanes):
            # The last block's header may be cut by the end of the stream;
            # then the lanes past the cut have one byte fewer.
            count = len(range(j, n, BLOCK_BYTES))
            chunk[j::BLOCK_BYTES] = lane[first : first + count]
        chunks.append(chunk)
    return b"".join(chunks), tag, key
