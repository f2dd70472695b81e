"""What checking every received byte costs, next to not checking.

Feeds a payload to :class:`racelab.checker.StreamChecker` in chunks the
size of race.py's packets, as ``data_received()`` would, and times it side
by side with a bare loop that only counts the bytes; also times payload
generation, and the slow path on a stream that lost one chunk in 100.
Prints a table; nothing passes or fails.

Usage::

    .venv/bin/python benchmarks/bench_checker.py [--mib 32] [--chunk 16384]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from racelab import payload as payload_module
from racelab.checker import StreamChecker
from racelab.payload import Payload


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of *repeat* calls of *fn*, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bare(chunks: list[bytes]) -> int:
    """The baseline: what a data_received() that only counts costs."""
    received = 0
    for chunk in chunks:
        received += len(chunk)
    return received


def memcmp_only(data: bytes, chunks: list[bytes]) -> int:
    """The floor: the one comparison per chunk the checker must make."""
    offset = 0
    for chunk in chunks:
        if data.startswith(chunk, offset):
            offset += len(chunk)
    return offset


def check(payload: Payload, chunks: list[bytes]) -> StreamChecker:
    """Feed every chunk to a new checker."""
    checker = StreamChecker(payload)
    feed = checker.feed
    for chunk in chunks:
        feed(chunk)
    return checker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=32, help="payload MiB")
    parser.add_argument("--chunk", type=int, default=16384, help="bytes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    size = args.mib << 20

    def generate() -> Payload:
        payload_module._generate.cache_clear()
        return Payload(args.seed, size)

    gen_times = timed(generate, max(3, args.repeat // 2))
    payload = Payload(args.seed, size)
    # Separate bytes objects, as a transport delivers them.
    chunks = [
        bytes(payload.view[i : i + args.chunk])
        for i in range(0, size, args.chunk)
    ]
    lossy = [c for i, c in enumerate(chunks) if i % 100 != 99]

    # Interleave the loops' repeats so that load from other processes on
    # a shared machine hits them alike.
    loops = {
        "bare loop (count bytes)": (lambda: bare(chunks), len(chunks)),
        "memcmp only (floor)": (
            lambda: memcmp_only(payload.data, chunks),
            len(chunks),
        ),
        "StreamChecker.feed": (lambda: check(payload, chunks), len(chunks)),
        "feed, 1 chunk in 100 lost": (
            lambda: check(payload, lossy),
            len(lossy),
        ),
    }
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(args.repeat):
        for name, (fn, _n) in loops.items():
            best[name] = min(best[name], timed(fn, 1)[0])
    checker = check(payload, lossy)
    report_times = timed(checker.report, args.repeat)

    print(
        f"payload: {args.mib} MiB, seed {args.seed}; chunks of "
        f"{args.chunk} bytes: {len(chunks)}; best of {args.repeat}"
    )
    print(
        f"payload generation: best {min(gen_times) * 1e3:.1f} ms, "
        f"median {statistics.median(gen_times) * 1e3:.1f} ms"
    )
    print()
    base = best["bare loop (count bytes)"]
    print(
        f"{'loop':28} {'best ms':>9} {'MiB/s':>9} {'ns/chunk':>9} "
        f"{'x bare':>7}"
    )
    for name, (_fn, n) in loops.items():
        print(
            f"{name:28} {best[name] * 1e3:9.2f} "
            f"{args.mib / best[name]:9.0f} {best[name] / n * 1e9:9.0f} "
            f"{best[name] / base:7.1f}"
        )
    report = checker.report()
    print()
    print(
        f"report() after the lossy feed: best {min(report_times) * 1e3:.2f} ms"
        f" ({len(report.missing)} missing ranges, "
        f"{sum(r.length for r in report.missing)} bytes)"
    )


if __name__ == "__main__":
    main()
