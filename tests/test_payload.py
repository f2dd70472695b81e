"""Tests for racelab.payload: determinism, layout, locating received bytes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from racelab.payload import BLOCK_BYTES, HEADER_BYTES, Payload

MiB = 1 << 20


def reference_bytes(seed: int, size: int) -> bytes:
    """The payload as the module docstring defines it, one block at a
    time."""
    digest = hashlib.sha256(b"racelab payload header %d" % seed).digest()
    tag, key = digest[:4], int.from_bytes(digest[4:8], "little")
    out = bytearray()
    for start in range(0, size, MiB):
        name = b"racelab payload filler %d %d" % (seed, start)
        out += hashlib.shake_128(name).digest(min(MiB, size - start))
    for index, at in enumerate(range(0, size, BLOCK_BYTES)):
        header = tag + (index ^ key).to_bytes(4, "little")
        n = min(HEADER_BYTES, size - at)
        out[at : at + n] = header[:n]
    return bytes(out)


@pytest.mark.parametrize(
    "size", [1, 7, 8, 9, 255, 256, 257, 263, 264, 5000, MiB + 300]
)
def test_payload_matches_reference_layout(size):
    """Filler and headers are laid out as documented, at any size."""
    payload = Payload(11, size)

    assert payload.data == reference_bytes(11, size)


def test_payload_golden_digest():
    """The bytes for a fixed seed never change across Python versions."""
    payload = Payload(1234, MiB + 1000)

    digest = hashlib.sha256(payload.data).hexdigest()

    assert digest == (
        "72fe8e9f9a013b717a83c42dbb33de450157e1476729009f1e768678a4aa8878"
    )


def test_payload_same_seed_same_bytes():
    """Two payloads of one seed and size hold equal bytes."""
    first = bytes(Payload(5, 70_000).data)
    Payload(6, 70_000)
    Payload(7, 70_000)  # evicts seed 5 from the cache

    again = Payload(5, 70_000).data

    assert again == first


def test_payload_different_seeds_differ():
    """Different seeds give different filler and different headers."""
    a, b = Payload(1, 10_000), Payload(2, 10_000)

    assert a.data[HEADER_BYTES:BLOCK_BYTES] != b.data[HEADER_BYTES:BLOCK_BYTES]
    assert a.data[:HEADER_BYTES] != b.data[:HEADER_BYTES]
    assert b.locate(a.data[1000:3000]) is None


def test_payload_shorter_is_prefix_of_longer():
    """A payload is a prefix of a longer payload of the same seed."""
    short, long = Payload(3, 1000 * BLOCK_BYTES + 5), Payload(3, 2 * MiB)

    assert long.data.startswith(short.data)


def test_payload_cache_keeps_last_two():
    """The same (seed, size) reuses its bytes; a third one evicts."""
    first = Payload(21, 4096).data

    assert Payload(21, 4096).data is first
    Payload(22, 4096)
    Payload(23, 4096)
    assert Payload(21, 4096).data is not first


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    size=st.integers(1, 200_000),
    where=st.floats(0, 1, exclude_max=True),
    length=st.integers(HEADER_BYTES, 20_000),
)
def test_payload_locate_any_offset(seed, size, where, length):
    """A run of at least 8 bytes locates at its offset, aligned or not."""
    payload = Payload(seed, size)
    offset = int(where * size)
    chunk = payload.data[offset : offset + length]

    found = payload.locate(chunk)

    if len(chunk) >= HEADER_BYTES:
        assert found == offset
    else:
        assert found is None or payload.data[found:].startswith(chunk)


def test_payload_locate_tail_shorter_than_a_block():
    """The last bytes of the stream, with no header in them, locate."""
    payload = Payload(8, 50 * BLOCK_BYTES + 100)
    chunk = payload.data[-40:]

    assert payload.locate(chunk) == payload.size - 40


def test_payload_locate_memoryview():
    """A memoryview chunk locates like bytes."""
    payload = Payload(8, 20_000)

    assert payload.locate(payload.view[1234:5678]) == 1234


@pytest.mark.parametrize(
    "chunk",
    [
        b"",
        b"\x00" * 3000,
        b"hello, world",
        bytes(range(256)) * 4,
        hashlib.shake_128(b"not the payload").digest(5000),
    ],
)
def test_payload_locate_foreign_bytes_is_none(chunk):
    """Bytes that are not a run of the payload locate nowhere."""
    assert Payload(9, 100_000).locate(chunk) is None


def test_payload_locate_spliced_runs_is_none():
    """Two runs glued together are not one run, though each has headers."""
    payload = Payload(9, 100_000)
    chunk = payload.data[1000:3000] + payload.data[5000:7000]

    assert payload.locate(chunk) is None


def test_payload_locate_short_repeated_chunk_is_none():
    """A chunk too short to be unique in the stream locates nowhere."""
    payload = Payload(9, 100_000)

    assert payload.locate(payload.data[:4]) is None  # the tag recurs


def test_payload_find_header_gives_stream_offset():
    """find_header returns the header's position and its stream offset."""
    payload = Payload(10, 10_000)
    buf = b"junk" + payload.data[300:2000]

    assert payload.find_header(buf) == (4 + 512 - 300, 512)
    assert payload.find_header(buf, 4 + 512 - 300 + 1) == (
        4 + 768 - 300,
        768,
    )
    assert payload.find_header(b"junk" * 100) is None


def test_payload_packet_slices():
    """packet() views the stream cut every packet_bytes; the last may be
    short."""
    payload = Payload(4, 10_000)

    assert bytes(payload.packet(0, 4096)) == payload.data[:4096]
    assert bytes(payload.packet(1, 4096)) == payload.data[4096:8192]
    assert bytes(payload.packet(2, 4096)) == payload.data[8192:]
    assert isinstance(payload.packet(2, 4096), memoryview)


def test_payload_packet_out_of_range():
    """packet() names the valid indices when asked for one past the end."""
    payload = Payload(4, 10_000)

    with pytest.raises(IndexError) as info:
        payload.packet(3, 4096)

    assert str(info.value) == "index must be an integer from 0 to 2 (got 3)"


def test_payload_packet_bytes_must_be_positive():
    """packet() rejects a packet size below 1."""
    with pytest.raises(ValueError) as info:
        Payload(4, 10_000).packet(0, 0)

    assert str(info.value) == "packet_bytes must be an integer >= 1 (got 0)"


@pytest.mark.parametrize(
    "seed, size, message",
    [
        (-1, 10, "seed must be an integer >= 0 (got -1)"),
        (True, 10, "seed must be an integer >= 0 (got True)"),
        (0, 0, "size must be an integer from 1 to 2147483648 (got 0)"),
        (0, 2.0, "size must be an integer from 1 to 2147483648 (got 2.0)"),
    ],
)
def test_payload_rejects_bad_arguments(seed, size, message):
    """Bad seed or size is refused with the argument, rule and value."""
    with pytest.raises(ValueError) as info:
        Payload(seed, size)

    assert str(info.value) == message
