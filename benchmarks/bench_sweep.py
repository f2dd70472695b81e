"""Sweep throughput with 1 and 2 workers, and the memory of a big sweep.

Prints, in one run:

- trials per minute with one worker process and with two, and their
  ratio (the steady rate, from the first finished trial to the last, and
  the rate counting worker start-up), best of ``--repeat`` sweeps each,
  since the cores are shared and another job can halve one sweep's rate;
- the peak resident memory of a sweep of ``--trials`` small trials (10,000
  by default) on two workers: the parent's, its workers' together, and
  both, sampled every 50 ms with psutil; with the run's size on disk.

Trials are small (20 packets of 1 KiB echoed on 127.0.0.1, pausing every
0.01 ms), so the numbers measure the sweep machinery: dispatch, pickling,
part writes.  Numbers only, no verdict.

Usage::

    .venv/bin/python benchmarks/bench_sweep.py
    .venv/bin/python benchmarks/bench_sweep.py --trials 1000  # quick
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from racelab.sweep import sweep

BASE = {"packets": 20, "packet_bytes": 1024, "pause_for_ms": 0.01}
# Four cells: paused or not, OS or small receive buffer.
AXES = {"pause_every_ms": [0, 0.01], "client_rcvbuf_bytes": [None, 4096]}

MIB = 1 << 20


class PeakMemory:
    """Samples this process's RSS and its children's, keeping the peaks."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.parent = 0
        self.children = 0
        self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval_s):
            parent = me.memory_info().rss
            children = 0
            for child in me.children(recursive=True):
                try:
                    children += child.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    pass
            self.parent = max(self.parent, parent)
            self.children = max(self.children, children)
            self.total = max(self.total, parent + children)


def timed_sweep(trials: int, workers: int, data_dir: Path) -> dict:
    """Run a sweep of about *trials* trials; its wall and steady rates."""
    per_cell = max(1, trials // 4)
    stamps: list[float] = []
    started = time.perf_counter()
    result = sweep(
        AXES,
        config=BASE,
        trials=per_cell,
        workers=workers,
        data_dir=data_dir,
        progress=False,
        on_trial=lambda row: stamps.append(time.perf_counter()),
    )
    wall_s = time.perf_counter() - started
    n = len(result.trials)
    steady_s = stamps[-1] - stamps[0] if len(stamps) > 1 else wall_s
    return {
        "trials": n,
        "wall_s": wall_s,
        "per_min_wall": n / wall_s * 60,
        "per_min_steady": (n - 1) / steady_s * 60,
        "outcomes": result.manifest["summary"]["outcomes"],
        "folder": result.folder,
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--trials",
        type=int,
        default=10_000,
        help="trials in the memory sweep [default: %(default)s]",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="throughput sweeps per worker count; the best counts "
        "[default: %(default)s]",
    )
    parser.add_argument(
        "--throughput-trials",
        type=int,
        default=2000,
        help="trials in each throughput sweep [default: %(default)s]",
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="racelab-bench-sweep-"))
    try:
        print(
            f"cores available: {len(psutil.Process().cpu_affinity())}; "
            f"load average: {psutil.getloadavg()[0]:.2f}"
        )
        rates = {}
        for workers in (1, 2):
            runs = [
                timed_sweep(args.throughput_trials, workers, data_dir)
                for _ in range(max(1, args.repeat))
            ]
            r = max(runs, key=lambda r: r["per_min_steady"])
            rates[workers] = r
            spread = ", ".join(f"{x['per_min_steady']:,.0f}" for x in runs)
            print(
                f"{workers} worker(s): {r['trials']} trials in "
                f"{r['wall_s']:.2f} s: {r['per_min_steady']:,.0f} "
                f"trials/min steady, {r['per_min_wall']:,.0f} with "
                f"start-up (steady rates of the {len(runs)} sweeps: "
                f"{spread})  {r['outcomes']}"
            )
        print(
            "ratio 2 workers / 1: "
            f"{rates[2]['per_min_steady'] / rates[1]['per_min_steady']:.2f}x"
            " steady, "
            f"{rates[2]['per_min_wall'] / rates[1]['per_min_wall']:.2f}x "
            "with start-up"
        )

        with PeakMemory() as peak:
            r = timed_sweep(args.trials, 2, data_dir)
        print(
            f"memory sweep: {r['trials']} trials on 2 workers in "
            f"{r['wall_s']:.1f} s ({r['per_min_wall']:,.0f} trials/min); "
            f"on disk {folder_bytes(r['folder']) / MIB:.1f} MiB"
        )
        print(
            f"peak RSS: parent {peak.parent / MIB:.0f} MiB, workers "
            f"{peak.children / MIB:.0f} MiB together, both "
            f"{peak.total / MIB:.0f} MiB"
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
